"""Narrow ports between the components and their adapters.

The registry adapter (:mod:`fleet.registry.etcd`) implements these against a
real etcd; the in-memory fakes used by pure-logic tests must pass the same
contract tests. All methods are coroutines: the daemon is one asyncio process
and fleetctl runs one ``asyncio.run`` per command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from fleet.core.model import DesiredState, Job, Machine, UnitState


class UnitStore(Protocol):
    """Unit bodies (content-addressed) and their desired state (`job/<name>`)."""

    async def create_unit(self, name: str, body: str, hash: str, desired: DesiredState) -> None:
        """Body and job in ONE transaction; AlreadyExists if ``job/<name>`` exists."""

    async def replace_unit(self, name: str, body: str, hash: str, desired: DesiredState) -> None:
        """Create or overwrite body+job in one transaction (``--replace``, API PUT)."""

    async def get_job(self, name: str) -> Job | None: ...

    async def list_jobs(self) -> list[Job]:
        """Every job, sorted by name."""

    async def get_unit_body(self, hash: str) -> str | None: ...

    async def get_unit_bodies(self, hashes: Sequence[str]) -> dict[str, str]: ...

    async def set_desired_state(self, name: str, desired: DesiredState) -> None:
        """NotFound if the job does not exist (compare-and-set in one transaction)."""

    async def destroy_unit(self, name: str) -> bool:
        """Delete ``job/<name>``; False if it did not exist."""


class ClusterView(Protocol):
    """Read side used by fleetctl's etcd driver and the API."""

    async def list_schedule(self) -> dict[str, str]:
        """unit name -> machine id for every scheduled (non-global) unit."""

    async def list_unit_states(self) -> list[UnitState]:
        """Every published unit state, sorted by (name, machine id)."""

    async def list_machines(self) -> list[Machine]:
        """Live machines (presence lease held), dynamic metadata overlaid, sorted by id."""

    async def list_reasons(self) -> dict[str, str]:
        """unit name -> why the engine could not place it (feature B1)."""

    async def set_machine_metadata(self, machine_id: str, key: str, value: str | None) -> None:
        """Dynamic metadata; ``None`` removes the key (fleet's ``""`` tombstone)."""


class EventKind(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: EventKind
    key: str  # relative to the registry prefix, e.g. "job/hello.service"
    value: bytes
    revision: int


class Watchable(Protocol):
    async def list_prefix(self, prefix: str) -> tuple[dict[str, bytes], int]:
        """(relative key -> value, revision of the read) for a relative prefix."""

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Batches of events from ``start_revision``; survives etcd restarts by
        re-watching from the last seen revision + 1; raises StoreCompacted when
        that revision is gone (the caller relists)."""


class Leadership(Protocol):
    """A held engine leadership: its writes are fenced on the leader key
    (a Txn comparing ``engine/leader``'s value and mod_revision)."""

    machine_id: str

    @property
    def lost(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """One engine write: put ``name`` on ``machine_id`` with the unit ``hash`` and
    the ``desired`` state the agent must reach (``loaded`` or ``launched``), or
    remove it from there when ``hash`` is None. The engine rewrites an entry when
    the job's hash or desired state changes, so an agent needs to watch only its
    own ``schedule/<machine-id>/`` prefix."""

    name: str
    machine_id: str
    hash: str | None
    desired: DesiredState = DesiredState.LAUNCHED


class EngineStore(Protocol):
    """What the engine needs beyond the read side (implemented by EtcdRegistry)."""

    async def campaign(self, machine_id: str, version: str, ttl: float) -> Leadership | None:
        """Try once to take ``engine/leader`` on a fresh lease of ``ttl`` seconds.
        Returns the held leadership (its lease is kept alive by a task owned by the
        registry until ``resign``/loss), or None if another engine leads."""

    async def resign(self, leadership: Leadership) -> None: ...

    async def apply_schedule(
        self,
        leadership: Leadership,
        changes: Sequence[ScheduleChange],
        reasons: Mapping[str, str | None],
    ) -> None:
        """Write placements/removals (``schedule/<machine>/<name>``) and unplaceable
        reasons (None clears) in fenced transactions of at most 128 ops each.
        Raises NotLeader when the fence fails; nothing of that batch is written."""


class MachineLease(Protocol):
    """An agent's presence: ``machine/<id>`` and its unit states hang on this lease."""

    lease_id: int

    @property
    def lost(self) -> bool: ...


class AgentStore(Protocol):
    async def register_machine(self, machine: Machine, ttl: float) -> MachineLease:
        """Create ``machine/<id>`` on a fresh lease kept alive by a registry-owned
        task. AlreadyExists if another live lease holds that machine id."""

    async def resume_machine(
        self, lease_id: int, machine: Machine, ttl: float
    ) -> MachineLease | None:
        """Adopt a presence this machine's previous fleetd left: the lease must be
        alive, granted for ``ttl`` and hold ``machine/<id>``; else None (and the
        caller registers)."""

    async def update_machine(self, lease: MachineLease, machine: Machine) -> None: ...

    async def unregister_machine(self, lease: MachineLease) -> None:
        """Revoke the lease: the machine key and its unit states vanish."""

    async def machine_schedule(self, machine_id: str) -> dict[str, Job]:
        """unit name -> Job(name, hash, desired) scheduled to this machine."""

    async def list_global_units(self) -> dict[str, Job]:
        """Every global unit (the ``global/<name>`` mirror kept by the unit store)."""

    async def publish_unit_state(self, lease: MachineLease, state: UnitState) -> None: ...

    async def delete_unit_state(self, name: str, machine_id: str) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


# Convenience alias for machine metadata maps.
Metadata = Mapping[str, str]
