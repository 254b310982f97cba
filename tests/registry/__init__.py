"""Contract tests of the etcd registry against a real etcd server."""

from tests.asyncsupport import async_test, eventually

__all__ = ["async_test", "eventually"]
