"""Encoding of every etcd value fleet stores: versioned JSON objects.

Each value is one compact JSON object carrying ``"v": 1`` so a later schema can
be told apart and migrated; readers ignore fields they do not know (a newer
writer may add some). A value that is not what its key promises raises
:class:`fleet.errors.StoreError` naming the key: corrupt data is reported, never
guessed around.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

from fleet.core.events import Event, EventKind, default_message
from fleet.core.maintenance import (
    DEFAULT_MIN_HEALTHY,
    Cordon,
    DrainPhase,
    DrainRequest,
    DrainStatus,
    MoveState,
    UnitMove,
)
from fleet.core.model import DesiredState, Job, Machine, PlacementReason, UnitState
from fleet.errors import StoreError

VERSION = 1


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, **obj}, separators=(",", ":"), sort_keys=True).encode()


def _load(raw: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"corrupt value at {where}: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("v"), int):
        raise StoreError(f"corrupt value at {where}: not a versioned object")
    return obj


def _str(obj: Mapping[str, Any], field: str, where: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str):
        raise StoreError(f"corrupt value at {where}: {field!r} is not a string")
    return value


def _desired(obj: Mapping[str, Any], where: str) -> DesiredState:
    try:
        return DesiredState(_str(obj, "desired", where))
    except ValueError as exc:
        raise StoreError(f"corrupt value at {where}: {exc}") from exc


def _str_map(obj: Mapping[str, Any], field: str, where: str) -> dict[str, str]:
    value = obj.get(field, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StoreError(f"corrupt value at {where}: {field!r} is not a string map")
    return dict(value)


# --- unit bodies --------------------------------------------------------------


def encode_body(body: str) -> bytes:
    return _dump({"body": body})


def decode_body(raw: bytes, where: str) -> str:
    return _str(_load(raw, where), "body", where)


# --- jobs and their global mirror ---------------------------------------------


def encode_job(job: Job) -> bytes:
    return _dump({"name": job.name, "hash": job.hash, "desired": job.desired_state.value})


def decode_job(raw: bytes, where: str) -> Job:
    obj = _load(raw, where)
    return Job(_str(obj, "name", where), _str(obj, "hash", where), _desired(obj, where))


# --- schedule -----------------------------------------------------------------


def encode_schedule(hash: str, desired: DesiredState) -> bytes:
    return _dump({"hash": hash, "desired": desired.value})


def decode_schedule(raw: bytes, name: str, where: str) -> Job:
    obj = _load(raw, where)
    return Job(name, _str(obj, "hash", where), _desired(obj, where))


# --- reasons and dynamic metadata -----------------------------------------------


def encode_reason(reason: PlacementReason) -> bytes:
    return _dump(
        {
            "reason": reason.text,
            "hash": reason.hash,
            "desired": reason.desired.value if reason.desired is not None else "",
            "machines": reason.machines,
        }
    )


def decode_reason(raw: bytes, where: str) -> PlacementReason:
    obj = _load(raw, where)
    desired = str(obj.get("desired", ""))
    try:
        state = DesiredState(desired) if desired else None
    except ValueError as exc:
        raise StoreError(f"corrupt value at {where}: {exc}") from exc
    return PlacementReason(
        _str(obj, "reason", where),
        hash=str(obj.get("hash", "")),
        desired=state,
        machines=str(obj.get("machines", "")),
    )


def encode_metadata_value(value: str | None) -> bytes:
    """``None`` is a tombstone: it hides a configured key (fleet's ``""``)."""
    return _dump({"value": value})


def decode_metadata_value(raw: bytes, where: str) -> str | None:
    value = _load(raw, where).get("value")
    if value is not None and not isinstance(value, str):
        raise StoreError(f"corrupt value at {where}: 'value' is not a string")
    return value or None


# --- machines -----------------------------------------------------------------


def encode_machine(machine: Machine) -> bytes:
    return _dump(
        {
            "id": machine.id,
            "public_ip": machine.public_ip,
            "metadata": dict(machine.metadata),
            "version": machine.version,
            "capabilities": dict(machine.capabilities),
        }
    )


def encode_seen(machine: Machine, lost_since: float | None = None) -> bytes:
    """The lease-less record of a machine: what it published, and since when it is
    lost (None while present, or before an engine noticed)."""
    obj = json.loads(encode_machine(machine))
    obj["lost_since"] = lost_since
    return _dump(obj)


def decode_seen(raw: bytes, where: str) -> tuple[Machine, float | None]:
    obj = _load(raw, where)
    since = obj.get("lost_since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
        raise StoreError(f"corrupt value at {where}: 'lost_since' is not a number")
    return decode_machine(raw, where), None if since is None else float(since)


def decode_machine(raw: bytes, where: str) -> Machine:
    obj = _load(raw, where)
    caps = obj.get("capabilities", {})
    if not isinstance(caps, dict) or not all(isinstance(v, bool) for v in caps.values()):
        raise StoreError(f"corrupt value at {where}: 'capabilities' is not a bool map")
    return Machine(
        id=_str(obj, "id", where),
        public_ip=str(obj.get("public_ip", "")),
        metadata=_str_map(obj, "metadata", where),
        version=str(obj.get("version", "")),
        capabilities=dict(caps),
    )


# --- unit states --------------------------------------------------------------


def encode_state(state: UnitState) -> bytes:
    return _dump(
        {
            "load": state.load_state,
            "active": state.active_state,
            "sub": state.sub_state,
            "hash": state.hash,
            "fleet_state": state.fleet_state.value,
            "result": state.result,
            "start_result": state.start_result,
            "error": state.error,
        }
    )


def decode_state(raw: bytes, name: str, machine_id: str, where: str) -> UnitState:
    obj = _load(raw, where)
    try:
        fleet_state = DesiredState(obj.get("fleet_state", DesiredState.LOADED.value))
    except ValueError as exc:
        raise StoreError(f"corrupt value at {where}: {exc}") from exc
    return UnitState(
        name=name,
        machine_id=machine_id,
        load_state=_str(obj, "load", where),
        active_state=_str(obj, "active", where),
        sub_state=_str(obj, "sub", where),
        hash=_str(obj, "hash", where),
        fleet_state=fleet_state,
        result=str(obj.get("result", "")),
        start_result=str(obj.get("start_result", "")),
        error=str(obj.get("error", "")),
    )


# --- engine leader --------------------------------------------------------------


def encode_leader(machine_id: str, version: str, lease_id: int, engine_version: int = 0) -> bytes:
    # The lease id makes two terms of the same machine distinct values.
    return _dump(
        {
            "machine_id": machine_id,
            "version": version,
            "lease": lease_id,
            "engine_version": engine_version,
        }
    )


def decode_leader(raw: bytes, where: str) -> tuple[str, str]:
    obj = _load(raw, where)
    return _str(obj, "machine_id", where), str(obj.get("version", ""))


def decode_leader_engine_version(raw: bytes, where: str) -> int:
    """The engine version a leader record was written by (0: before the version gate)."""
    value = _load(raw, where).get("engine_version", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"corrupt value at {where}: 'engine_version' is not an integer")
    return value


def encode_engine_version(version: int) -> bytes:
    return str(version).encode()


def decode_engine_version(raw: bytes, where: str) -> int:
    """``engine/version``: the newest engine version registered, a decimal integer."""
    text = raw.decode(errors="replace").strip()
    if not text.isdigit():
        raise StoreError(f"corrupt value at {where}: {text!r} is not an engine version")
    return int(text)


# --- machine maintenance (cordon, drain request, drain status) ------------------


def _num(obj: Mapping[str, Any], field: str, where: str, default: float) -> float:
    value = obj.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"corrupt value at {where}: {field!r} is not a number")
    return float(value)


def encode_cordon(cordon: Cordon) -> bytes:
    return _dump({"reason": cordon.reason, "since": cordon.since})


def decode_cordon(raw: bytes, where: str) -> Cordon:
    obj = _load(raw, where)
    return Cordon(str(obj.get("reason", "")), _num(obj, "since", where, 0.0))


def encode_drain_request(request: DrainRequest) -> bytes:
    return _dump(
        {
            "max_parallel": request.max_parallel,
            "min_healthy": request.min_healthy,
            "timeout": request.timeout,
            "include_global": request.include_global,
            "paused": request.paused,
            "started": request.started,
        }
    )


def decode_drain_request(raw: bytes, where: str) -> DrainRequest:
    obj = _load(raw, where)
    parallel = obj.get("max_parallel", 1)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise StoreError(f"corrupt value at {where}: 'max_parallel' is not a positive integer")
    timeout = None if obj.get("timeout") is None else _num(obj, "timeout", where, 0.0)
    return DrainRequest(
        max_parallel=parallel,
        min_healthy=_num(obj, "min_healthy", where, DEFAULT_MIN_HEALTHY),
        timeout=timeout,
        include_global=bool(obj.get("include_global", False)),
        paused=bool(obj.get("paused", False)),
        started=_num(obj, "started", where, 0.0),
    )


def encode_drain_status(status: DrainStatus) -> bytes:
    return _dump(
        {
            "phase": status.phase.value,
            "started": status.started,
            "detail": status.detail,
            "units": {
                name: {"state": m.state.value, "to": m.to, "detail": m.detail}
                for name, m in status.units.items()
            },
        }
    )


def decode_drain_status(raw: bytes, where: str) -> DrainStatus:
    obj = _load(raw, where)
    units = obj.get("units", {})
    if not isinstance(units, dict):
        raise StoreError(f"corrupt value at {where}: 'units' is not a map")
    try:
        moves = {
            str(name): UnitMove(
                MoveState(m["state"]), str(m.get("to", "")), str(m.get("detail", ""))
            )
            for name, m in units.items()
        }
        phase = DrainPhase(_str(obj, "phase", where))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"corrupt value at {where}: {exc}") from exc
    return DrainStatus(phase, _num(obj, "started", where, 0.0), moves, str(obj.get("detail", "")))


def encode_event(event: Event) -> bytes:
    """Hot in the engine (one per placement), so lean and hand-built: the id and
    the unit are in the key, a message equal to :func:`default_message` and null
    fields are left out, the time is kept to the millisecond."""
    kind = event.kind
    parts = [f'{{"v":{VERSION},"time":{event.time!r},"kind":"{kind.value}"']
    if event.machine:
        parts.append(f',"machine":{_json_text(event.machine)}')
    message = event.message
    if message and (kind not in _DEFAULTED or message != default_message(kind, event.machine)):
        parts.append(f',"message":{_json_text(message)}')
    if event.reason is not None:
        parts.append(f',"reason":{_json_text(event.reason)}')
    if event.result is not None:
        parts.append(f',"result":{_json_text(event.result)}')
    parts.append("}")
    return "".join(parts).encode()


_DEFAULTED = frozenset({EventKind.PLACED, EventKind.UNSCHEDULED})
_json_text = functools.lru_cache(maxsize=4096)(encode_basestring_ascii)


def _opt_str(obj: Mapping[str, Any], field: str, where: str) -> str | None:
    value = obj.get(field)
    if value is not None and not isinstance(value, str):
        raise StoreError(f"corrupt value at {where}: {field} is not a string")
    return value


def decode_event(raw: bytes, where: str, event_id: str, unit: str | None) -> Event:
    """An event from its value and what its key says (its id, its unit's stream)."""
    obj = _load(raw, where)
    try:
        kind = EventKind(str(obj.get("kind")))
    except ValueError as exc:
        raise StoreError(f"corrupt value at {where}: unknown event kind") from exc
    time = obj.get("time")
    if not isinstance(time, int | float) or isinstance(time, bool):
        raise StoreError(f"corrupt value at {where}: time is not a number")
    machine = _opt_str(obj, "machine", where)
    return Event(
        id=event_id,
        time=float(time),
        kind=kind,
        unit=unit,
        machine=machine,
        message=_opt_str(obj, "message", where) or default_message(kind, machine),
        reason=_opt_str(obj, "reason", where),
        result=_opt_str(obj, "result", where),
    )
