"""Tests of fleet API v1: the app served for real by uvicorn on a unix socket
(and TCP+TLS), talked to with httpx, on the real etcd registry."""
