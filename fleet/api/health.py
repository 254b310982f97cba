"""``/``, ``/health`` and ``/ready``: what load balancers, systemd watchdogs and people probe.

``/health`` is liveness: fleetd's API answers, nothing else is consulted (a
liveness probe that fails with etcd would restart every fleetd of a cluster
during an etcd outage). ``/ready`` is readiness: this fleetd has registered its
machine and etcd answers a read now; 503 otherwise, with what failed. Neither
is behind the v1 readiness gate, and neither is paginated or versioned. ``/``
is a small JSON index of what this server offers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from fleet.errors import StoreError
from fleet.ports import ClusterView

# etcd must answer the readiness read within this long (a probe must not hang).
READY_TIMEOUT = 2.0


def index(version: str, machine_id: str) -> dict[str, Any]:
    return {
        "name": "fleet",
        "version": version,
        "machineID": machine_id,
        "links": {
            "discovery": "/fleet/v1/discovery",
            "health": "/health",
            "ready": "/ready",
            "metrics": "/metrics",
            "openapi": "/openapi.json",
        },
    }


async def etcd_reachable(view: ClusterView) -> str:
    """ "" if etcd answered a read within READY_TIMEOUT, else why not."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await view.get_leader()
    except TimeoutError:
        return f"etcd did not answer within {READY_TIMEOUT:g}s"
    except StoreError as exc:
        return str(exc)
    return ""


def add_routes(
    app: FastAPI,
    view: ClusterView,
    ready: Callable[[], bool],
    *,
    version: str,
    machine_id: str,
) -> None:
    @app.get("/health", summary="Liveness: the API answers")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": version, "machineID": machine_id})

    @app.get(
        "/ready",
        summary="Readiness: machine registered and etcd reachable",
        responses={503: {"description": "not ready"}},
    )
    async def readiness() -> JSONResponse:
        registered = ready()
        problem = await etcd_reachable(view)
        body: dict[str, Any] = {
            "ready": registered and not problem,
            "registered": registered,
            "etcd": not problem,
            "machineID": machine_id,
        }
        if problem:
            body["detail"] = problem
        elif not registered:
            body["detail"] = "this fleetd has not registered its machine yet"
        return JSONResponse(body, status_code=200 if body["ready"] else 503)
