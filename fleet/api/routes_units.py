"""``/units`` and ``/units/<name>``: fleet's unit resource on the wire.

The routes only translate: JSON in, a :mod:`fleet.units` use case, fleet's
status codes and unit objects out (empty fields left out, as fleet did).
Every rule about units (names, templates, ``[X-Fleet]``, views) lives in
:mod:`fleet.units`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter

from fleet import units
from fleet.api import schema
from fleet.api.errors import ApiProblem
from fleet.api.listing import Listings
from fleet.api.wire import (
    check_content_type,
    json_response,
    parse,
    read_json,
    request_body,
)
from fleet.core.model import DesiredState
from fleet.core.names import validate_unit_name
from fleet.core.unitfile import UnitFile, UnitOption
from fleet.core.views import ParsedBodies, UnitInfo
from fleet.errors import InvalidInput, NotFound

_UNIT_PUT = TypeAdapter(schema.UnitPut)
_DESIRED_PATCH = TypeAdapter(schema.DesiredStatesPatch)


def unit_to_wire(info: UnitInfo) -> schema.Unit:
    return schema.Unit(
        name=info.name,
        options=[
            schema.UnitOption(section=o.section, name=o.name, value=o.value)
            for o in info.unit.options
        ],
        desiredState=info.desired.value,
        currentState=info.current.value if info.current is not None else "",
        machineID=info.machine_id or "",
        reason=info.reason or "",
        failure=info.failure or "",
    )


def _desired(text: str) -> DesiredState | None:
    if not text:
        return None
    if text not in schema.DESIRED_STATES:
        raise InvalidInput(f'invalid desiredState "{text}": expect inactive, loaded or launched')
    return DesiredState(text)


def units_router(registry: units.Registry, token_limit: int, listings: Listings) -> APIRouter:
    router = APIRouter()
    bodies = ParsedBodies(units.BODY_CACHE_SIZE)

    async def snapshot(revision: int) -> list[UnitInfo]:
        return await units.list_units(registry, revision=revision, bodies=bodies)

    async def list_units(token: schema.PageToken) -> JSONResponse:
        page, next_token = await listings.page("units", token, snapshot)
        return json_response(
            schema.UnitPage(units=[unit_to_wire(i) for i in page], nextPageToken=next_token)
        )

    @router.get(
        "/units",
        responses={200: {"model": schema.UnitPage}, 400: {"model": schema.ErrorEnvelope}},
    )
    async def get_units(nextPageToken: str | None = None) -> JSONResponse:
        return await list_units(schema.PageToken.from_query(nextPageToken, token_limit))

    @router.patch(
        "/units",
        status_code=204,
        responses={
            204: {"description": "every desired state set (extension)"},
            400: {"model": schema.ErrorEnvelope},
            404: {"model": schema.ErrorEnvelope},
            415: {"model": schema.ErrorEnvelope},
        },
        openapi_extra=request_body(_DESIRED_PATCH),
    )
    async def patch_units(request: Request) -> Response:
        """Extension: set several units' desired states in one write, so the engine
        judges them together (``fleetctl start a b c`` of followers and targets)."""
        check_content_type(request)
        body = parse(_DESIRED_PATCH, await read_json(request))
        wanted: dict[str, DesiredState] = {}
        for name, text in body.desired_states.items():
            validate_unit_name(name)
            state = _desired(text)
            if state is None:
                raise InvalidInput(f"no desiredState given for unit {name}")
            wanted[name] = state
        await units.set_desired_states(registry, wanted)
        return Response(status_code=204)

    @router.get(
        "/units/{name:anytext}",
        responses={
            200: {"model": schema.Unit},
            400: {"model": schema.ErrorEnvelope},
            404: {"model": schema.ErrorEnvelope},
        },
    )
    async def get_unit(name: str, nextPageToken: str | None = None) -> JSONResponse:
        if not name:  # "/units/" is the collection, as in fleet
            return await list_units(schema.PageToken.from_query(nextPageToken, token_limit))
        info = await units.get_unit(registry, name, bodies)
        if info is None:
            raise NotFound("unit does not exist")
        return json_response(unit_to_wire(info))

    @router.put(
        "/units/{name:anytext}",
        status_code=201,
        responses={
            201: {"description": "unit created or its content replaced"},
            204: {"description": "desired state set"},
            400: {"model": schema.ErrorEnvelope},
            409: {"model": schema.ErrorEnvelope},
            413: {"model": schema.ErrorEnvelope},
            415: {"model": schema.ErrorEnvelope},
        },
        openapi_extra=request_body(_UNIT_PUT),
    )
    async def put_unit(name: str, request: Request) -> Response:
        check_content_type(request)
        body = parse(_UNIT_PUT, await read_json(request))
        wanted = body.name or name
        if wanted != name:
            raise InvalidInput(
                f'name in URL "{name}" differs from unit name in request body "{wanted}"'
            )
        validate_unit_name(name)  # before the desired state: fleet's order of complaints
        desired = _desired(body.desired_state)
        unit_file = (
            UnitFile.from_options(UnitOption(o.section, o.name, o.value) for o in body.options)
            if body.options
            else None
        )
        done = await units.put_unit(registry, name, unit_file, desired)
        return Response(status_code=204 if done is units.Put.DESIRED_STATE_SET else 201)

    @router.delete(
        "/units/{name:anytext}",
        status_code=204,
        responses={204: {"description": "destroyed"}, 404: {"model": schema.ErrorEnvelope}},
    )
    async def delete_unit(name: str) -> Response:
        if not name:
            raise ApiProblem(405, "only GET supported against this resource")
        if not await units.destroy_unit(registry, name):
            raise NotFound("unit does not exist")
        return Response(status_code=204)

    return router
