"""``/state`` and ``/state/<name>``: the unit states agents published, on the wire.

The listing pages (one snapshot per listing, :mod:`fleet.api.listing`) and
filters by exact ``machineID`` and ``unitName`` (as
:func:`fleet.units.list_unit_states` does for every client); one unit's state
is its first published state, as fleet answered.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fleet import units
from fleet.api import schema
from fleet.api.listing import Listings
from fleet.api.wire import json_response
from fleet.core.model import UnitState
from fleet.core.names import validate_unit_name
from fleet.errors import NotFound
from fleet.ports import ClusterView


def state_to_wire(state: UnitState) -> schema.UnitState:
    return schema.UnitState(
        name=state.name,
        hash=state.hash,
        machineID=state.machine_id,
        systemdLoadState=state.load_state,
        systemdActiveState=state.active_state,
        systemdSubState=state.sub_state,
        systemdResult=state.result,
        startJobResult=state.start_result,
        error=state.error,
    )


def state_router(view: ClusterView, token_limit: int, listings: Listings) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/state",
        responses={200: {"model": schema.UnitStatePage}, 400: {"model": schema.ErrorEnvelope}},
    )
    async def get_states(
        machineID: str | None = None,
        unitName: str | None = None,
        nextPageToken: str | None = None,
    ) -> JSONResponse:
        token = schema.PageToken.from_query(nextPageToken, token_limit)

        async def snapshot(revision: int) -> list[UnitState]:
            return await units.list_unit_states(view, machineID, unitName, revision=revision)

        page, next_token = await listings.page(("state", machineID, unitName), token, snapshot)
        return json_response(
            schema.UnitStatePage(states=[state_to_wire(s) for s in page], nextPageToken=next_token)
        )

    @router.get(
        "/state/{name:anytext}",
        responses={200: {"model": schema.UnitState}, 404: {"model": schema.ErrorEnvelope}},
    )
    async def get_state(name: str) -> JSONResponse:
        validate_unit_name(name)
        for state in await units.list_unit_states(view, unit_name=name):
            return json_response(state_to_wire(state))
        raise NotFound("unit state does not exist")

    return router
