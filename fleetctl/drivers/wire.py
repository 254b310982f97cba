"""The fleet API's JSON entities as fleetctl's model objects, in one pass each.

What a listing costs: a unit entity carries its options, not its hash, so
every unit file is rebuilt and hashed here; instances of one template share
their options, so each distinct file is built once per run. Requirements are
validated only for a unit that sets ``[X-Fleet] Global`` (nothing else can
make it global).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fleet.core.model import DesiredState, Machine, UnitState
from fleet.errors import APIError, InvalidInput

if TYPE_CHECKING:
    from fleet.core.model import ClusterInfo
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleet.maintenance import Maintenance

_DESIRED = {state.value: state for state in DesiredState}
# Unit files already built, by their exact wire options, with whether they say Global.
Built = dict[tuple[tuple[str, str, str], ...], tuple["UnitFile", bool]]


def _unit_file(name: str, options: list[dict[str, Any]], built: Built) -> tuple[UnitFile, bool]:
    """The unit file of these wire options and whether ``[X-Fleet] Global`` is set."""
    from fleet.core.unitfile import UnitFile, UnitOption  # list-units never needs it

    key = tuple(
        (str(o.get("section", "")), str(o.get("name", "")), str(o.get("value", "")))
        for o in options
    )
    cached = built.get(key)
    if cached is None:
        try:
            unit = UnitFile.from_options([UnitOption(*option) for option in key])
        except InvalidInput as exc:
            raise APIError(f"the fleet API returned an unusable unit {name!r}: {exc}") from exc
        cached = built[key] = unit, any(s == "X-Fleet" and n == "Global" for s, n, _ in key)
    return cached


def _desired(value: object) -> DesiredState:
    found = _DESIRED.get(value) if isinstance(value, str) else None
    return found if found is not None else DesiredState(str(value))


def unit_infos_from_wire(wires: Iterable[dict[str, Any]]) -> list[UnitInfo]:
    """Unit entities of one listing; each distinct unit file is built once."""
    built: Built = {}
    return [unit_info_from_wire(wire, built) for wire in wires]


def unit_info_from_wire(wire: dict[str, Any], built: Built | None = None) -> UnitInfo:
    """A unit entity of the API (``/units``) as a :class:`UnitInfo`."""
    from fleet.core.views import UnitInfo

    name = str(wire.get("name", ""))
    unit, says_global = _unit_file(name, wire.get("options") or [], {} if built is None else built)
    current = wire.get("currentState") or None
    return UnitInfo(
        name=name,
        unit=unit,
        hash=unit.hash,
        desired=_desired(wire.get("desiredState") or "inactive"),
        current=_desired(current) if current else None,
        machine_id=wire.get("machineID") or None,
        # Validating the requirements can only make a unit global if it says so.
        is_global=says_global and _unit_is_global(name, unit),
        reason=wire.get("reason") or None,
        failure=wire.get("failure") or None,
    )


def _unit_is_global(name: str, unit: UnitFile) -> bool:
    from fleet.core.views import unit_is_global

    return unit_is_global(name, unit)


def unit_state_from_wire(wire: dict[str, Any]) -> UnitState:
    """A unit state of the API (``/state``) as a :class:`UnitState`."""
    get = wire.get
    return UnitState(
        str(get("name", "")),
        str(get("machineID", "")),
        str(get("systemdLoadState", "")),
        str(get("systemdActiveState", "")),
        str(get("systemdSubState", "")),
        str(get("hash", "")),
        result=str(get("systemdResult", "")),
        start_result=str(get("startJobResult", "")),
        error=str(get("error", "")),
    )


def machine_from_wire(wire: dict[str, Any]) -> Machine:
    """A machine entity of the API (``/machines``) as a :class:`Machine`."""
    metadata = wire.get("metadata") or {}
    return Machine(
        id=str(wire.get("id", "")),
        public_ip=str(wire.get("primaryIP", "")),
        metadata={str(k): str(v) for k, v in metadata.items()},
        cordon=str(wire.get("cordonReason", "")) if wire.get("cordoned") else None,
        version=str(wire.get("version", "")),
    )


def cluster_info_from_wire(wire: dict[str, Any]) -> ClusterInfo:
    """``GET /cluster`` (fleet.api.routes_cluster) as a :class:`ClusterInfo`."""
    from fleet.core.model import ClusterInfo, EtcdMember, LostMachine

    leader = wire.get("leader")
    lost = tuple(
        LostMachine(
            machine_from_wire(item),
            None if item.get("lostSince") is None else float(item["lostSince"]),
        )
        for item in wire.get("lostMachines") or []
    )
    members = tuple(
        EtcdMember(
            id=str(item.get("id", "")),
            name=str(item.get("name", "")),
            client_urls=tuple(str(u) for u in item.get("clientURLs") or []),
            healthy=bool(item.get("healthy")),
            leader=bool(item.get("leader")),
            version=str(item.get("version", "")),
            db_size=int(item.get("dbSize") or 0),
            error=str(item.get("error", "")),
        )
        for item in wire.get("etcdMembers") or []
    )
    return ClusterInfo(
        (str(leader["machineID"]), str(leader.get("version", ""))) if leader else None,
        lost,
        members,
    )


def maintenance_from_wire(wire: dict[str, Any]) -> Maintenance:
    """The wire form of ``GET /machines/{id}/drain`` (fleet.api.routes_maintenance)."""
    from fleet.core.maintenance import (
        Cordon,
        DrainPhase,
        DrainRequest,
        DrainStatus,
        MoveState,
        UnitMove,
    )
    from fleet.maintenance import Maintenance

    try:
        cordon = request = status = None
        if (c := wire.get("cordon")) is not None:
            cordon = Cordon(str(c.get("reason", "")), float(c.get("since", 0.0)))
        if (d := wire.get("drain")) is not None:
            timeout = d.get("timeout")
            request = DrainRequest(
                max_parallel=int(d["maxParallel"]),
                min_healthy=float(d["minHealthyTime"]),
                timeout=None if timeout is None else float(timeout),
                include_global=bool(d.get("includeGlobal", False)),
                paused=bool(d.get("paused", False)),
                started=float(d["started"]),
            )
        if (s := wire.get("status")) is not None and request is not None:
            moves = {
                str(u["name"]): UnitMove(
                    MoveState(u["state"]), str(u.get("machineID", "")), str(u.get("detail", ""))
                )
                for u in s.get("units") or []
            }
            phase = DrainPhase(s["phase"])
            status = DrainStatus(phase, request.started, moves, str(s.get("detail", "")))
        return Maintenance(str(wire.get("machineID", "")), cordon, request, status)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise APIError(f"the fleet API sent a drain report fleetctl cannot read: {exc}") from exc
