"""From etcd keys and values to typed registry changes.

The one place that turns a :class:`~fleet.ports.events.Scope` into a key
prefix and a watched key-value into a :mod:`fleet.ports.events` record, so no
component parses a key. A value that cannot be decoded is logged and dropped:
one corrupt entry must not stop scheduling or reconciling for everyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fleet.errors import FleetError
from fleet.ports.events import (
    BodyChanged,
    CordonChanged,
    DrainChanged,
    DrainStatusChanged,
    GlobalChanged,
    JobChanged,
    Leader,
    LeaderChanged,
    MachineChanged,
    MetadataChanged,
    ReasonChanged,
    RegistryEvent,
    ScheduleChanged,
    Scope,
    Topic,
    UnitStateChanged,
)
from fleet.registry import codec
from fleet.registry.keys import (
    CORDON,
    DRAIN,
    ENGINE_LEADER,
    GLOBAL,
    JOB,
    MACHINE,
    MACHINE_METADATA,
    MAINTENANCE,
    REASON,
    SCHEDULE,
    STATE,
    UNIT,
    Keys,
)

log = logging.getLogger(__name__)

Decoder = Callable[[str, bytes | None, int], RegistryEvent]
"""(relative key, value or None for a delete, revision) -> change; raises FleetError."""


def scope_prefix(keys: Keys, scope: Scope) -> bytes:
    """The absolute key prefix (or, for the leader, the key) a scope covers."""
    topic, machine_id = scope.topic, scope.machine_id
    if topic is Topic.SCHEDULE:
        return keys.schedules(machine_id)
    if topic is Topic.MAINTENANCE:
        return keys.maintenance(machine_id)
    if topic is Topic.METADATA:
        return (
            keys.machine_metadata_all()
            if machine_id is None
            else keys.machine_metadata_of(machine_id)
        )
    return keys.absolute(_PREFIXES[topic])


def _job(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    name = Keys.parse_leaf(relative, JOB)
    job = None if raw is None else codec.decode_job(raw, relative)
    return JobChanged(name, job, revision)


def _body(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    hash = Keys.parse_leaf(relative, UNIT)
    return BodyChanged(hash, None if raw is None else codec.decode_body(raw, relative), revision)


def _global(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    name = Keys.parse_leaf(relative, GLOBAL)
    return GlobalChanged(name, None if raw is None else codec.decode_job(raw, relative), revision)


def _schedule(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    machine_id, name = Keys.parse_schedule_key(relative)
    entry = None if raw is None else codec.decode_schedule(raw, name, relative)
    return ScheduleChanged(machine_id, name, entry, revision)


def _machine(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    machine_id = Keys.parse_leaf(relative, MACHINE)
    machine = None if raw is None else codec.decode_machine(raw, relative)
    return MachineChanged(machine_id, machine, revision)


def _metadata(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    machine_id, key = Keys.parse_metadata_key(relative)
    if raw is None:
        return MetadataChanged(machine_id, key, None, revision, removed=True)
    return MetadataChanged(machine_id, key, codec.decode_metadata_value(raw, relative), revision)


def _state(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    name, machine_id = Keys.parse_state_key(relative)
    state = None if raw is None else codec.decode_state(raw, name, machine_id, relative)
    return UnitStateChanged(name, machine_id, state, revision)


def _reason(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    name = Keys.parse_leaf(relative, REASON)
    return ReasonChanged(
        name, None if raw is None else codec.decode_reason(raw, relative), revision
    )


def _leader(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    if relative != ENGINE_LEADER:
        raise FleetError(f"unexpected key {relative!r} for the engine leader")
    if raw is None:
        return LeaderChanged(None, revision)
    machine_id, version = codec.decode_leader(raw, relative)
    return LeaderChanged(Leader(machine_id, version), revision)


def _maintenance(relative: str, raw: bytes | None, revision: int) -> RegistryEvent:
    machine_id, kind = Keys.parse_maintenance_key(relative)
    if kind == CORDON:
        cordon = None if raw is None else codec.decode_cordon(raw, relative)
        return CordonChanged(machine_id, cordon, revision)
    if kind == DRAIN:
        request = None if raw is None else codec.decode_drain_request(raw, relative)
        return DrainChanged(machine_id, request, revision)
    status = None if raw is None else codec.decode_drain_status(raw, relative)
    return DrainStatusChanged(machine_id, status, revision)


_PREFIXES: dict[Topic, str] = {
    Topic.JOBS: JOB,
    Topic.BODIES: UNIT,
    Topic.GLOBALS: GLOBAL,
    Topic.SCHEDULE: SCHEDULE,
    Topic.MACHINES: MACHINE,
    Topic.METADATA: MACHINE_METADATA,
    Topic.STATES: STATE,
    Topic.REASONS: REASON,
    Topic.LEADER: ENGINE_LEADER,
    Topic.MAINTENANCE: MAINTENANCE,
}

_DECODERS: dict[Topic, Decoder] = {
    Topic.JOBS: _job,
    Topic.BODIES: _body,
    Topic.GLOBALS: _global,
    Topic.SCHEDULE: _schedule,
    Topic.MACHINES: _machine,
    Topic.METADATA: _metadata,
    Topic.STATES: _state,
    Topic.REASONS: _reason,
    Topic.LEADER: _leader,
    Topic.MAINTENANCE: _maintenance,
}


def decode(topic: Topic, relative: str, raw: bytes | None, revision: int) -> RegistryEvent | None:
    """The change for one key of ``topic``; None (logged) if it cannot be decoded."""
    try:
        return _DECODERS[topic](relative, raw, revision)
    except FleetError as exc:
        log.error("ignoring %s: %s", relative, exc)
        return None
