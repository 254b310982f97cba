"""Typed registry changes: what a watch or a listing of the registry delivers.

The registry adapter decodes its own keys and values and hands out these
frozen records, so no component ever sees an etcd key, a byte string or a
prefix. A :class:`Scope` names what to list or watch (a topic, and for the
per-machine topics one machine). Each change carries the etcd revision it was
made at; ``None`` in the payload field means the entry was deleted.

A listing is delivered in the same form, one change per entry that exists,
so a consumer has one code path for "what is there" and "what changed".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleet.core.maintenance import Cordon, DrainRequest, DrainStatus
from fleet.core.model import Job, Machine, PlacementReason, UnitState


class Topic(StrEnum):
    """What part of the registry a :class:`Scope` covers."""

    JOBS = "jobs"  # desired state of every unit
    BODIES = "bodies"  # unit file bodies, by content hash
    GLOBALS = "globals"  # the global units (a mirror of their jobs)
    SCHEDULE = "schedule"  # placements (all machines, or one)
    MACHINES = "machines"  # live machines as their agents published them
    METADATA = "metadata"  # dynamic machine metadata (all machines, or one)
    STATES = "states"  # unit states published by the agents
    REASONS = "reasons"  # why the engine could not place a unit
    LEADER = "leader"  # the engine leader
    MAINTENANCE = "maintenance"  # cordons, drain requests and drain progress


_PER_MACHINE = frozenset({Topic.SCHEDULE, Topic.METADATA, Topic.MAINTENANCE})


@dataclass(frozen=True, slots=True)
class Scope:
    """A topic, narrowed to one machine where the topic allows it."""

    topic: Topic
    machine_id: str | None = None

    def __post_init__(self) -> None:
        if self.machine_id is not None and self.topic not in _PER_MACHINE:
            raise ValueError(f"topic {self.topic} cannot be narrowed to one machine")

    @classmethod
    def schedule_of(cls, machine_id: str) -> Scope:
        return cls(Topic.SCHEDULE, machine_id)

    @classmethod
    def metadata_of(cls, machine_id: str) -> Scope:
        return cls(Topic.METADATA, machine_id)


@dataclass(frozen=True, slots=True)
class JobChanged:
    name: str
    job: Job | None
    revision: int


@dataclass(frozen=True, slots=True)
class BodyChanged:
    hash: str
    body: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class GlobalChanged:
    name: str
    job: Job | None
    revision: int


@dataclass(frozen=True, slots=True)
class ScheduleChanged:
    """``entry`` is what ``machine_id`` must do with ``name`` (its hash and the
    desired state to reach), None when the unit was taken off that machine."""

    machine_id: str
    name: str
    entry: Job | None
    revision: int


@dataclass(frozen=True, slots=True)
class MachineChanged:
    machine_id: str
    machine: Machine | None
    revision: int


@dataclass(frozen=True, slots=True)
class MetadataChanged:
    """One dynamic metadata key of a machine. ``value`` None with ``removed``
    False is a tombstone (it hides the configured key, fleet's ``""``);
    ``removed`` True means the dynamic key is gone and the configured value, if
    any, shows again."""

    machine_id: str
    key: str
    value: str | None
    revision: int
    removed: bool = False


@dataclass(frozen=True, slots=True)
class UnitStateChanged:
    name: str
    machine_id: str
    state: UnitState | None
    revision: int


@dataclass(frozen=True, slots=True)
class ReasonChanged:
    name: str
    reason: PlacementReason | None
    revision: int


@dataclass(frozen=True, slots=True)
class CordonChanged:
    machine_id: str
    cordon: Cordon | None
    revision: int


@dataclass(frozen=True, slots=True)
class DrainChanged:
    """A client's drain request for a machine (None: no drain asked for)."""

    machine_id: str
    request: DrainRequest | None
    revision: int


@dataclass(frozen=True, slots=True)
class DrainStatusChanged:
    """The engine leader's progress report on a machine's drain."""

    machine_id: str
    status: DrainStatus | None
    revision: int


@dataclass(frozen=True, slots=True)
class Leader:
    machine_id: str
    version: str


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    leader: Leader | None
    revision: int


RegistryEvent = (
    JobChanged
    | BodyChanged
    | GlobalChanged
    | ScheduleChanged
    | MachineChanged
    | MetadataChanged
    | UnitStateChanged
    | ReasonChanged
    | LeaderChanged
    | CordonChanged
    | DrainChanged
    | DrainStatusChanged
)
