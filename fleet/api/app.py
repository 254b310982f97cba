"""fleet API v1 as a FastAPI application: the composition of its parts.

:func:`create_app` builds the app on any registry that is both a
:class:`~fleet.ports.UnitStore` and a :class:`~fleet.ports.ClusterView`
(:class:`fleet.units.Registry`). The v1 routes (``routes_*``) are mounted at
``/fleet/v1`` and at fleet's older ``/v1-alpha``; :mod:`fleet.api.errors` turns
every error into fleet's envelope and :mod:`fleet.api.middleware` adds the
readiness gate, the Server header and the request metrics. Bad input is always
a 4xx and nothing is written; an etcd outage is a 503; only a bug is a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry

from fleet.api import health
from fleet.api.errors import ApiProblem, install_error_handlers
from fleet.api.listing import Listings
from fleet.api.middleware import Envelope
from fleet.api.routes_cluster import cluster_router
from fleet.api.routes_discovery import discovery_router
from fleet.api.routes_events import events_router
from fleet.api.routes_machines import machines_router
from fleet.api.routes_maintenance import maintenance_router
from fleet.api.routes_state import state_router
from fleet.api.routes_units import units_router
from fleet.api.routes_watch import watch_router
from fleet.api.ui import ui_router
from fleet.changes import ChangeFeed
from fleet.errors import InvalidInput
from fleet.metrics import CONTENT_TYPE_LATEST, FleetMetrics
from fleet.ports import Watchable
from fleet.units import Registry

PREFIXES = ("/fleet/v1", "/v1-alpha")


def _v1_router(registry: Registry, token_limit: int, feed: ChangeFeed) -> APIRouter:
    router = APIRouter()
    listings = Listings(registry)  # shared by both prefixes' routes
    router.include_router(watch_router(feed))
    router.include_router(discovery_router())
    router.include_router(units_router(registry, token_limit, listings))
    router.include_router(state_router(registry, token_limit, listings))
    router.include_router(machines_router(registry, token_limit, listings))
    router.include_router(maintenance_router(registry))
    router.include_router(cluster_router(registry))
    router.include_router(events_router(registry))
    return router


def create_app(
    registry: Registry,
    *,
    machine_id: str,
    version: str,
    ready: Callable[[], bool] = lambda: True,
    token_limit: int = 100,
    metrics: FleetMetrics | CollectorRegistry | None = None,
) -> FastAPI:
    """The fleet API v1 app.

    Until ``ready()`` is true (the daemon has registered its machine) the v1
    routes answer 503, as fleet did. ``metrics`` is the daemon's
    :class:`FleetMetrics` (shared with the engine and registry), or a bare
    ``CollectorRegistry`` to register them on; by default a fresh private registry.
    """
    if not 0 < token_limit <= 0xFFFF:
        raise InvalidInput(f"token_limit must be between 1 and 65535, not {token_limit}")
    if not isinstance(metrics, FleetMetrics):
        metrics = FleetMetrics(metrics)
    app = FastAPI(
        title="fleet",
        version=version,
        description="fleet API v1 (compatible with CoreOS fleet) and its extensions.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.machine_id = machine_id
    app.state.metrics = metrics
    install_error_handlers(app)
    # Every registry fleetd serves is watchable; the ports keep reads and watches apart.
    feed = ChangeFeed(cast(Watchable, registry))
    app.state.change_feed = feed
    router = _v1_router(registry, token_limit, feed)
    app.include_router(router, prefix=PREFIXES[0])
    app.include_router(router, prefix=PREFIXES[1], include_in_schema=False)
    app.include_router(ui_router())

    @app.get("/", include_in_schema=False)
    async def index() -> JSONResponse:
        return JSONResponse(health.index(version, machine_id))

    @app.api_route("/", methods=["PUT", "POST", "DELETE", "PATCH"], include_in_schema=False)
    async def root() -> Response:
        raise ApiProblem(405, "only requests against /fleet/v1 are supported")

    health.add_routes(app, registry, ready, version=version, machine_id=machine_id)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Envelope, version=version, ready=ready, metrics=metrics, prefixes=PREFIXES)
    return app
