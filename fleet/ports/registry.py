"""The registry ports: what each component may ask of the cluster's shared state.

The etcd adapter (:mod:`fleet.registry`) implements every one of these; the
in-memory fakes used by pure-logic tests must pass the same contract tests.
All methods are coroutines: the daemon is one asyncio process and fleetctl
runs one ``asyncio.run`` per command. Nothing here names a key or a byte
string: the adapter decodes its own keys into :mod:`fleet.ports.events`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fleet.core.events import Event, EventQuery
from fleet.core.maintenance import Cordon, DrainRequest, DrainStatus
from fleet.core.model import (
    DesiredState,
    EtcdMember,
    Job,
    LostMachine,
    Machine,
    PlacementReason,
    UnitState,
)
from fleet.ports.events import RegistryEvent, Scope


class UnitStore(Protocol):
    """Unit bodies (content-addressed) and their desired state."""

    async def create_unit(
        self, name: str, body: str, hash: str, desired: DesiredState, is_global: bool
    ) -> None:
        """Body and job in ONE transaction; AlreadyExists if the unit exists.
        ``is_global`` (decided by the caller from the parsed requirements)
        keeps the global-units mirror the agents watch."""

    async def replace_unit(
        self, name: str, body: str, hash: str, desired: DesiredState, is_global: bool
    ) -> None:
        """Create or overwrite body and job in one transaction (``--replace``, API PUT)."""

    async def get_job(self, name: str) -> Job | None: ...

    async def list_jobs(self, revision: int = 0) -> list[Job]:
        """Every job, sorted by name (at ``revision``; the current one when 0)."""

    async def get_unit_body(self, hash: str) -> str | None: ...

    async def get_unit_bodies(self, hashes: Sequence[str], revision: int = 0) -> dict[str, str]: ...

    async def set_desired_state(self, name: str, desired: DesiredState) -> None:
        """NotFound if the unit does not exist (compare-and-set in one transaction)."""

    async def set_desired_states(self, desired: Mapping[str, DesiredState]) -> None:
        """Several at once, in one transaction (NotFound, and nothing written, if
        any does not exist), so the engine sees them together."""

    async def destroy_unit(self, name: str) -> bool:
        """Delete the unit; False if it did not exist."""


class ClusterView(Protocol):
    """Read side used by fleetctl's etcd driver and the API.

    The listings take a ``revision`` (0: the current one) so that a reader can
    join several of them, or page through one, as one consistent snapshot
    (:meth:`pin_revision` gives and checks it)."""

    async def pin_revision(self, revision: int = 0) -> int:
        """The current revision (``revision`` 0), or ``revision`` itself once it is
        known to be still readable; StoreCompacted when it is not."""

    async def list_schedule(self, revision: int = 0) -> dict[str, str]:
        """unit name -> machine id for every scheduled (non-global) unit."""

    async def list_unit_states(self, revision: int = 0) -> list[UnitState]:
        """Every published unit state, sorted by (name, machine id)."""

    async def list_machines(self, revision: int = 0) -> list[Machine]:
        """Live machines (presence lease held), dynamic metadata and cordons
        overlaid, sorted by id."""

    async def list_unit_states_of(self, names: Sequence[str]) -> list[UnitState]:
        """The published states of these units only, sorted by (name, machine id)."""

    async def list_reasons(self, revision: int = 0) -> dict[str, PlacementReason]:
        """unit name -> why the engine could not place it (feature B1), with what
        it judged (stale ones included: the reader compares)."""

    async def set_machine_metadata(self, machine_id: str, key: str, value: str | None) -> None:
        """Dynamic metadata; ``None`` hides the key (fleet's ``""`` tombstone)."""

    async def get_leader(self) -> tuple[str, str] | None:
        """(machine id, engine version) of the engine leader, if there is one."""

    async def list_lost_machines(self) -> list[LostMachine]:
        """Machines whose presence expired without leaving on purpose, by id."""

    async def etcd_members(self) -> list[EtcdMember]:
        """The etcd cluster's members and their health."""


class MaintenanceStore(Protocol):
    """Cordons and drains of machines (written by clients; progress by the engine)."""

    async def set_cordon(self, machine_id: str, cordon: Cordon | None) -> None:
        """Cordon the machine (or lift its cordon, its drain and the drain's
        progress at once, with None)."""

    async def request_drain(self, machine_id: str, request: DrainRequest, cordon: Cordon) -> None:
        """Cordon (keeping an existing cordon's reason and time) and ask for a drain,
        in one transaction."""

    async def set_drain_paused(self, machine_id: str, paused: bool) -> bool:
        """Pause or resume the machine's drain; False if none was asked for."""

    async def get_maintenance(
        self, machine_id: str
    ) -> tuple[Cordon | None, DrainRequest | None, DrainStatus | None]:
        """The machine's cordon, drain request and the engine's drain progress."""


class Watchable(Protocol):
    """Typed listings and watches of one :class:`~fleet.ports.events.Scope`."""

    async def list_changes(self, scope: Scope) -> tuple[list[RegistryEvent], int]:
        """Every entry of ``scope`` as a change (none deleted), and the revision read.
        An entry whose value cannot be decoded is logged and left out."""

    def watch(self, scope: Scope, start_revision: int) -> AsyncGenerator[list[RegistryEvent], None]:
        """Batches of changes from ``start_revision``; survives etcd restarts by
        re-watching from the last seen revision + 1; raises StoreCompacted when
        that revision is gone (the caller lists again). A caller that stops early
        closes the stream (``aclose``) to end the etcd watch."""


class HeldLease(Protocol):
    """A lease this process keeps alive in the registry; losing it is final."""

    @property
    def lost(self) -> bool: ...

    async def wait_lost(self) -> str:
        """Return (with why) once the lease is lost; at once if it already is."""


class Leadership(HeldLease, Protocol):
    """A held engine leadership: its writes are fenced on the leader record
    (etcd compares its value and mod_revision in every write)."""

    machine_id: str


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """One engine write: put ``name`` on ``machine_id`` with the unit ``hash`` and
    the ``desired`` state the agent must reach (``loaded`` or ``launched``), or
    remove it from there when ``hash`` is None. The engine rewrites an entry when
    the job's hash or desired state changes, so an agent needs to watch only its
    own schedule."""

    name: str
    machine_id: str
    hash: str | None
    desired: DesiredState = DesiredState.LAUNCHED


class EngineStore(Protocol):
    """What the engine writes (implemented by EtcdRegistry)."""

    async def campaign(
        self, machine_id: str, version: str, ttl: float, engine_version: int = 0
    ) -> Leadership | None:
        """Try once to take the engine leadership on a fresh lease of ``ttl``
        seconds. Returns the held leadership (its lease is kept alive by a task
        owned by the registry until ``resign`` or loss), or None if another
        engine leads or a newer ``engine_version`` is registered (the version
        gate: an older engine never leads; a newer one deposes an older leader)."""

    async def engine_version(self) -> int | None:
        """The newest engine version registered, if any."""

    async def resign(self, leadership: Leadership) -> None: ...

    async def apply_schedule(
        self,
        leadership: Leadership,
        changes: Sequence[ScheduleChange],
        reasons: Mapping[str, PlacementReason | None],
        drains: Mapping[str, DrainStatus] | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        """Write drain progress (machine id -> status) first, then placements and
        removals, and unplaceable reasons (None clears), in fenced transactions
        of at most 128 ops each; then the pass's ``events``, fenced too, in the
        background (the next call, ``list_events`` and ``trim_events`` wait for
        them; a failure to write them is logged, never raised). Raises NotLeader
        when the fence fails; nothing of that batch is written."""

    async def list_unit_states_of(self, names: Sequence[str]) -> list[UnitState]:
        """The published states of these units (a drain follows its moves)."""

    async def collect_garbage(self) -> int:
        """Delete unit bodies no unit refers to (feature B9); how many."""

    async def sweep_lost_machines(
        self, present: Collection[str], now: float, retention: float
    ) -> None:
        """Stamp absent machines' records as lost since ``now``; forget those lost for
        longer than ``retention`` seconds."""

    async def trim_events(self) -> int:
        """Bound the event streams written since the last trim; how many deleted."""


class MachineLease(HeldLease, Protocol):
    """An agent's presence: its machine record and its unit states hang on it."""

    lease_id: int
    # time.monotonic() when the last refresh etcd acknowledged was sent: etcd cannot
    # expire the lease before renewed_at + ttl (the agent's disconnect clock).
    renewed_at: float


class AgentStore(Protocol):
    async def register_machine(self, machine: Machine, ttl: float) -> MachineLease:
        """Publish the machine on a fresh lease kept alive by a registry-owned
        task. AlreadyExists if another live lease holds that machine id."""

    async def resume_machine(
        self, lease_id: int, machine: Machine, ttl: float
    ) -> MachineLease | None:
        """Adopt a presence this machine's previous fleetd left: the lease must be
        alive, granted for ``ttl`` and hold this machine; else None (and the
        caller registers)."""

    async def update_machine(self, lease: MachineLease, machine: Machine) -> None: ...

    async def unregister_machine(self, lease: MachineLease) -> None:
        """Revoke the lease: the machine record and its unit states vanish."""

    async def machine_schedule(self, machine_id: str) -> dict[str, Job]:
        """unit name -> Job(name, hash, desired) scheduled to this machine."""

    async def machine_metadata(self, machine_id: str) -> dict[str, str | None]:
        """This machine's dynamic metadata (None: a tombstone hiding the key)."""

    async def get_maintenance(
        self, machine_id: str
    ) -> tuple[Cordon | None, DrainRequest | None, DrainStatus | None]:
        """This machine's cordon and drain (a drain with ``include_global`` stops
        its global units)."""

    async def list_global_units(self) -> dict[str, Job]:
        """Every global unit."""

    async def get_unit_body(self, hash: str) -> str | None: ...

    async def list_unit_states(self) -> list[UnitState]: ...

    async def publish_unit_state(self, lease: MachineLease, state: UnitState) -> None: ...

    async def delete_unit_state(self, name: str, machine_id: str) -> None: ...

    async def record_events(self, events: Sequence[Event]) -> None:
        """This machine's unit events (loaded, started, ..., failed), batched."""

    async def trim_events(self) -> int:
        """Bound the event streams written since the last trim; how many deleted."""


class EventStore(Protocol):
    """Cluster events (feature B13): bounded histories per unit and per machine."""

    async def record_events(self, events: Sequence[Event]) -> None:
        """Write events outside the engine's fenced transactions (agents, tests),
        batched, on the writer's shared age lease."""

    async def list_events(self, query: EventQuery) -> tuple[list[Event], int]:
        """The events ``query`` selects, oldest first, and the revision read."""

    def watch_events(self, start_revision: int) -> AsyncGenerator[list[Event], None]:
        """Every event recorded from ``start_revision`` on, in batches (deleted ones
        not reported). Raises StoreCompacted if that revision is gone."""

    async def trim_events(self) -> int:
        """Delete the oldest events of every stream written since the last trim
        beyond its bound; how many were deleted."""
