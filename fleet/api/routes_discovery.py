"""``/discovery``: the Google discovery document fleet's API published (read-only)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fleet.api.discovery import discovery_document
from fleet.api.wire import JSON, json_response
from fleet.errors import InvalidInput


def discovery_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/discovery",
        summary="Google discovery document of this API",
        responses={200: {"content": {JSON: {"schema": {"type": "object"}}}}},
    )
    async def get_discovery() -> JSONResponse:
        return json_response(discovery_document())

    @router.api_route(
        "/discovery", methods=["PUT", "POST", "DELETE", "PATCH"], include_in_schema=False
    )
    async def other_discovery() -> JSONResponse:
        raise InvalidInput("only GET supported against this resource")

    return router
