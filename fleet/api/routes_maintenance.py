"""``/machines/{id}/cordon`` and ``/machines/{id}/drain``: machine maintenance (an extension).

fleet's API v1 had no such resources; these follow its style (JSON bodies,
fleet's error envelope, camelCase fields). ``PUT .../cordon`` cordons,
``DELETE .../cordon`` lifts the cordon and ends any drain; ``PUT .../drain``
asks the engine to drain the machine (resuming a drain still under way),
``PATCH .../drain`` pauses or resumes it and ``GET .../drain`` reports the
cordon, the request and the engine's progress. The rules are
:mod:`fleet.maintenance`'s.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter

from fleet import maintenance
from fleet.api.schema import ErrorEnvelope
from fleet.api.wire import json_response, parse, read_json, request_body
from fleet.core.maintenance import DEFAULT_MIN_HEALTHY
from fleet.errors import NotFound


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class CordonBody(_Body):
    reason: StrictStr = ""


class DrainBody(_Body):
    max_parallel: StrictInt = Field(1, alias="maxParallel")
    min_healthy_time: float = Field(DEFAULT_MIN_HEALTHY, alias="minHealthyTime")
    timeout: float | None = None
    include_global: StrictBool = Field(False, alias="includeGlobal")
    reason: StrictStr = ""


class PauseBody(_Body):
    paused: StrictBool


_CORDON = TypeAdapter(CordonBody)
_DRAIN = TypeAdapter(DrainBody)
_PAUSE = TypeAdapter(PauseBody)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorEnvelope},
    404: {"model": ErrorEnvelope},
}


def maintenance_view(m: maintenance.Maintenance) -> dict[str, object]:
    """The wire form of a machine's maintenance (``GET .../drain``)."""
    out: dict[str, object] = {"machineID": m.machine_id}
    if m.cordon is not None:
        out["cordon"] = {"reason": m.cordon.reason, "since": m.cordon.since}
    if m.request is not None:
        r = m.request
        out["drain"] = {
            "maxParallel": r.max_parallel,
            "minHealthyTime": r.min_healthy,
            "timeout": r.timeout,
            "includeGlobal": r.include_global,
            "paused": r.paused,
            "started": r.started,
        }
    status = m.current_status
    if status is not None:
        out["status"] = {
            "phase": status.phase.value,
            "detail": status.detail,
            "units": [
                {
                    "name": name,
                    "state": move.state.value,
                    "machineID": move.to,
                    "detail": move.detail,
                }
                for name, move in status.units.items()
            ],
        }
    return out


def maintenance_router(store: maintenance.MaintenanceRegistry) -> APIRouter:
    router = APIRouter()

    @router.put(
        "/machines/{machine_id}/cordon",
        status_code=204,
        responses={204: {"description": "cordoned"}, **_ERRORS},
        openapi_extra=request_body(_CORDON),
    )
    async def put_cordon(machine_id: str, request: Request) -> Response:
        body = parse(_CORDON, await read_json(request))
        await maintenance.cordon(store, machine_id, body.reason, time.time())
        return Response(status_code=204)

    @router.delete(
        "/machines/{machine_id}/cordon",
        status_code=204,
        responses={204: {"description": "cordon lifted, drain ended"}, **_ERRORS},
    )
    async def delete_cordon(machine_id: str) -> Response:
        if not await maintenance.uncordon(store, machine_id):
            raise NotFound(f"machine {machine_id} is not cordoned")
        return Response(status_code=204)

    @router.put(
        "/machines/{machine_id}/drain",
        status_code=200,
        responses={200: {"description": "drain asked for"}, **_ERRORS},
        openapi_extra=request_body(_DRAIN),
    )
    async def put_drain(machine_id: str, request: Request) -> JSONResponse:
        body = parse(_DRAIN, await read_json(request))
        options = maintenance.DrainOptions(
            max_parallel=body.max_parallel,
            min_healthy=body.min_healthy_time,
            give_up_after=body.timeout,
            include_global=body.include_global,
            reason=body.reason,
        )
        await maintenance.drain(store, machine_id, time.time(), options)
        return json_response(maintenance_view(await maintenance.maintenance_of(store, machine_id)))

    @router.patch(
        "/machines/{machine_id}/drain",
        status_code=204,
        responses={204: {"description": "paused or resumed"}, **_ERRORS},
        openapi_extra=request_body(_PAUSE),
    )
    async def patch_drain(machine_id: str, request: Request) -> Response:
        body = parse(_PAUSE, await read_json(request))
        if body.paused:
            found = await maintenance.pause_drain(store, machine_id)
        else:
            found = await store.set_drain_paused(machine_id, False)
        if not found:
            raise NotFound(f"machine {machine_id} is not being drained")
        return Response(status_code=204)

    @router.get("/machines/{machine_id}/drain", responses={200: {"description": "maintenance"}})
    async def get_drain(machine_id: str) -> JSONResponse:
        return json_response(maintenance_view(await maintenance.maintenance_of(store, machine_id)))

    return router
