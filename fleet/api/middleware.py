"""The ASGI layer around every API request: what each answer carries whatever the route.

:class:`Envelope` gates the v1 routes with 503 until fleetd is ready, puts
``Server: fleetd/<version>`` (and a JSON Content-Type when a route set none)
on every answer, times each request into the API metrics under its route
template (bounded label cardinality), and turns a crash that escaped every
handler into a 500 envelope instead of a dropped connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.api.errors import ETCD_UNAVAILABLE, error_response
from fleet.metrics import FleetMetrics

log = logging.getLogger(__name__)

_JSON = b"application/json"


class Envelope:
    """Pure ASGI middleware (outermost but for Starlette's own error layer);
    ``prefixes`` are the mount points of the v1 routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        version: str,
        ready: Callable[[], bool],
        metrics: FleetMetrics,
        prefixes: Sequence[str],
    ) -> None:
        self.app = app
        self.server = f"fleetd/{version}".encode("latin-1")
        self.ready = ready
        self.metrics = metrics
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                headers.append((b"server", self.server))
                if not any(k.lower() == b"content-type" for k, _ in headers):
                    headers.append((b"content-type", _JSON))
                message = {**message, "headers": headers}
            await send(message)

        path: str = scope.get("path", "")
        try:
            if not self.ready() and path.startswith(self.prefixes):
                await error_response(503, ETCD_UNAVAILABLE)(scope, receive, send_wrapped)
            else:
                await self.app(scope, receive, send_wrapped)
        except Exception:
            # Never let a bug escape as a dropped connection or a text/plain page.
            log.exception("API %s %s crashed", scope.get("method"), path)
            if not started:
                await error_response(500, "")(scope, receive, send_wrapped)
        finally:
            template = route_template(scope, path, self.prefixes)
            self.metrics.api_request(
                scope.get("method", ""), template, status, time.perf_counter() - start
            )


def route_template(scope: Scope, path: str, prefixes: Sequence[str]) -> str:
    """The matched route's template (bounded label cardinality), with its mount prefix."""
    route_path = str(getattr(scope.get("route"), "path", "") or "")
    if not route_path:
        return "unmatched"
    for prefix in prefixes:
        # Routes of an included router carry their path without the mount prefix.
        if path.startswith(prefix + "/") and not route_path.startswith(prefix):
            return prefix + route_path
    return route_path
