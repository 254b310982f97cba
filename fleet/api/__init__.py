"""fleet API v1 (and our extensions): the FastAPI app (:mod:`fleet.api.app`), its
wire models and page tokens (:mod:`fleet.api.schema`), the discovery document,
Prometheus metrics (:mod:`fleet.metrics`) and serving on unix, systemd-passed
and TLS sockets (:mod:`fleet.api.server`)."""
