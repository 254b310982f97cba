"""``/machines``: the live machines on the wire, and dynamic metadata by PATCH.

GET pages the machines (dynamic metadata already overlaid by the registry;
one snapshot per listing, :mod:`fleet.api.listing`);
PATCH takes fleet's JSON-patch subset (:func:`fleet.api.schema.validate_patch`
checks the whole batch, with :mod:`fleet.machines`' rules, before the first
write) and writes the changes through :func:`fleet.machines.update_metadata`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter

from fleet import machines
from fleet.api import schema
from fleet.api.listing import Listings
from fleet.api.wire import json_response, parse, read_json, request_body
from fleet.ports import ClusterView

_PATCH = TypeAdapter(list[schema.MachinePatchOp])


def machines_router(view: ClusterView, token_limit: int, listings: Listings) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/machines",
        responses={200: {"model": schema.MachinePage}, 400: {"model": schema.ErrorEnvelope}},
    )
    async def get_machines(nextPageToken: str | None = None) -> JSONResponse:
        token = schema.PageToken.from_query(nextPageToken, token_limit)
        page, next_token = await listings.page("machines", token, view.list_machines)
        return json_response(
            schema.MachinePage(
                machines=[
                    schema.Machine(
                        id=m.id,
                        primaryIP=m.public_ip,
                        metadata=dict(m.metadata),
                        cordoned=True if m.cordon is not None else None,
                        cordonReason=m.cordon or "",
                        version=m.version,
                    )
                    for m in page
                ],
                nextPageToken=next_token,
            )
        )

    @router.patch(
        "/machines",
        status_code=204,
        responses={
            204: {"description": "applied"},
            400: {"model": schema.ErrorEnvelope},
            413: {"model": schema.ErrorEnvelope},
        },
        openapi_extra=request_body(_PATCH),
    )
    async def patch_machines(request: Request) -> Response:
        ops = parse(_PATCH, await read_json(request))
        await machines.update_metadata(view, schema.validate_patch(ops))
        return Response(status_code=204)

    return router
