"""fleet API v1 (and our extensions): the FastAPI app composed in :mod:`fleet.api.app`
from its routes (``routes_*``), error envelope (:mod:`fleet.api.errors`) and
middleware (:mod:`fleet.api.middleware`); wire models and page tokens
(:mod:`fleet.api.schema`), the discovery document, Prometheus metrics
(:mod:`fleet.metrics`) and serving on unix, systemd-passed and TLS sockets
(:mod:`fleet.api.server`). Unit rules are not here but in :mod:`fleet.units`."""
