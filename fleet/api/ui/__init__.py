"""The read-only web dashboard (feature B16), served by fleetd under ``/ui/`` on its API listeners.

Three views in one page (``index.html``, ``app.js``, ``style.css``, shipped in
this package: nothing is fetched from elsewhere and there is no build step):
the machines, the units, and one unit with its file and events. The page reads
the public API (``/fleet/v1/machines``, ``/units``, ``/state``, ``/events``)
and stays current through the change feed's server-sent events
(``/fleet/v1/watch``): each notice makes it read the listings again. It is
served on the same listeners as the API, so the same TLS and client-certificate
rules apply. The assets are read from the package when first asked for.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from fleet.errors import NotFound

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page runs only its own files and talks only to its own origin.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _asset_response(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound("no such dashboard file")
    return Response(asset(name), media_type=ASSETS[name], headers=HEADERS)


def ui_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/ui")
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=308)

    @router.get("/ui/")
    async def ui_index() -> Response:
        return _asset_response("index.html")

    @router.get("/ui/{name}")
    async def ui_asset(name: str) -> Response:
        return _asset_response(name)

    return router
