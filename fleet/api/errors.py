"""Every API error answer in fleet's envelope: the one mapping from errors to HTTP.

``{"error":{"code":N,"message":"..."}}`` for the project's own errors
(TooLarge 413, any other InvalidInput 400, NotFound 404, AlreadyExists 409,
ListingExpired 410, an etcd outage 503 with fleet's message, anything else a 500 that hides its
text), for :class:`ApiProblem` (statuses no error kind has: 405, 415) and for
FastAPI's and Starlette's own 404/405/422, so no client ever sees another
shape. A message that echoes a client's lone surrogate (valid JSON, not
UTF-8) is sent with it backslash-escaped rather than failing the answer.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from fleet.api import schema
from fleet.errors import (
    AlreadyExists,
    FleetError,
    InvalidInput,
    ListingExpired,
    NotFound,
    StoreUnavailable,
    TooLarge,
)

log = logging.getLogger(__name__)

ETCD_UNAVAILABLE = "fleet server unable to communicate with etcd"
_METHOD_ORDER = ("GET", "PUT", "PATCH", "POST", "DELETE")


class ApiProblem(Exception):
    """An HTTP error answer that is not one of fleet.errors' kinds (415, 405...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    # JSON lets a client send "\ud800"; echoed back as is, it cannot be encoded.
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(schema.error_envelope(status, text), status_code=status, headers=headers)


def status_of(exc: FleetError) -> int:
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AlreadyExists):
        return 409
    if isinstance(exc, ListingExpired):
        return 410
    if isinstance(exc, StoreUnavailable):
        return 503
    return 500


def describe_validation(errors: list[Any]) -> str:
    """One readable line from pydantic's error list."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "invalid request: " + "; ".join(parts)


def _allowed_methods(request: Request) -> list[str]:
    # Ask the router which methods would fully match this path: routes may be
    # nested (included routers), so their own method sets are not enough.
    routes = request.app.router.routes
    return [
        method
        for method in _METHOD_ORDER
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def _join_methods(methods: list[str]) -> str:
    if len(methods) <= 1:
        return "".join(methods)
    return ", ".join(methods[:-1]) + " and " + methods[-1]


def install_error_handlers(app: FastAPI) -> None:
    async def on_fleet_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FleetError)
        status = status_of(exc)
        if status == 503:
            return error_response(503, ETCD_UNAVAILABLE)
        if status == 500:
            log.error("API %s %s failed: %s", request.method, request.url.path, exc)
            return error_response(500, "")
        return error_response(status, str(exc))

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return error_response(exc.status, exc.message)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            methods = _allowed_methods(request)
            return error_response(
                405,
                f"only {_join_methods(methods)} supported against this resource",
                {"Allow": ", ".join(methods)},
            )
        if exc.status_code == 404:
            return error_response(404, "resource not found")
        return error_response(exc.status_code, str(exc.detail))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, describe_validation(list(exc.errors())))

    app.add_exception_handler(FleetError, on_fleet_error)
    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
