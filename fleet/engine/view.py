"""The engine leader's in-memory view of the cluster, fed by etcd watch events.

Owns the decoded state the scheduler needs (jobs, parsed unit bodies with their
requirements, the schedule, live machines with dynamic metadata overlaid, and
the reasons last written), how a watch event changes it, how a
:class:`fleet.core.scheduler.Snapshot` is cut from it, and how a
:class:`fleet.core.scheduler.Plan` becomes the registry writes of one pass
(removals, placements, rewrites of changed hash/desired state, and only the
reasons that changed). It does no I/O, so the engine loop stays small and this
translation is testable without etcd.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from fleet.core.maintenance import Cordon, DrainRequest, DrainStatus
from fleet.core.model import (
    DesiredState,
    Job,
    Machine,
    PlacementReason,
    machine_set_fingerprint,
)
from fleet.core.requirements import Requirements, parse_requirements
from fleet.core.scheduler import Plan, SchedUnit, Snapshot, explain
from fleet.core.unitfile import UnitFile
from fleet.errors import FleetError
from fleet.ports import (
    BodyChanged,
    CordonChanged,
    DrainChanged,
    DrainStatusChanged,
    JobChanged,
    MachineChanged,
    MetadataChanged,
    RegistryEvent,
    ScheduleChange,
    ScheduleChanged,
    Topic,
)

log = logging.getLogger(__name__)

# The topics the leader watches; reasons are written only by the leader, so
# listing them when leadership is gained is enough.
WATCHED = (
    Topic.JOBS,
    Topic.BODIES,
    Topic.SCHEDULE,
    Topic.MACHINES,
    Topic.METADATA,
    Topic.MAINTENANCE,
)


@dataclass(frozen=True, slots=True)
class _Body:
    """A unit body parsed once per hash; ``error`` when it cannot be parsed."""

    unit_file: UnitFile | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PassWrites:
    """What one reconcile pass sends to ``apply_schedule``."""

    changes: tuple[ScheduleChange, ...]
    reasons: dict[str, PlacementReason | None]
    placed: int
    removed: int
    rewritten: int
    drains: dict[str, DrainStatus] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.changes or self.reasons or self.drains)


@dataclass(frozen=True, slots=True)
class Cut:
    """One pass's input: ``snapshot`` for the planner, ``held`` units that can
    never be placed (name -> why), ``waiting`` units whose body has not arrived
    yet (no opinion about them this pass) and ``removals`` of schedule entries
    beyond the first machine of a unit scheduled twice."""

    snapshot: Snapshot
    held: Mapping[str, str]
    waiting: frozenset[str]
    removals: tuple[ScheduleChange, ...]


@dataclass
class ClusterState:
    """Decoded registry state as of the watches' last events."""

    jobs: dict[str, Job] = field(default_factory=dict)
    bodies: dict[str, _Body] = field(default_factory=dict)
    # name -> machine id -> what the schedule entry holds (Job with that name).
    schedule: dict[str, dict[str, Job]] = field(default_factory=dict)
    machines: dict[str, Machine] = field(default_factory=dict)
    dynamic_metadata: dict[str, dict[str, str | None]] = field(default_factory=dict)
    reasons: dict[str, PlacementReason] = field(default_factory=dict)
    cordons: dict[str, Cordon] = field(default_factory=dict)
    drains: dict[str, DrainRequest] = field(default_factory=dict)
    drain_status: dict[str, DrainStatus] = field(default_factory=dict)
    # Our own schedule writes whose watch echo has not arrived yet: older events
    # for those keys are stale and must not undo the write in the view.
    pending: dict[tuple[str, str], Job | None] = field(default_factory=dict)
    _requirements: dict[tuple[str, str], Requirements | str] = field(default_factory=dict)
    _sched_units: dict[str, tuple[Job, SchedUnit | str | None]] = field(default_factory=dict)
    _effective_machines: dict[str, Machine] | None = None

    # --- feeding ----------------------------------------------------------------

    def load(self, topic: Topic, listing: Iterable[RegistryEvent]) -> None:
        """Replace everything of ``topic`` with a fresh listing."""
        if topic is Topic.JOBS:
            self.jobs.clear()
        elif topic is Topic.SCHEDULE:
            self.schedule.clear()
            self.pending.clear()
        elif topic is Topic.MACHINES:
            self.machines.clear()
        elif topic is Topic.METADATA:
            self.dynamic_metadata.clear()
        elif topic is Topic.MAINTENANCE:
            self.cordons.clear()
            self.drains.clear()
            self.drain_status.clear()
        # Parsed bodies are content-addressed: keep those still listed, they
        # cannot change.
        listed: set[str] = set()
        for change in listing:
            if isinstance(change, BodyChanged):
                listed.add(change.hash)
            self._change(change)
        if topic is Topic.BODIES:
            for gone in set(self.bodies) - listed:
                del self.bodies[gone]
        self._effective_machines = None

    def load_reasons(self, listing: Mapping[str, PlacementReason]) -> None:
        self.reasons = dict(listing)

    def apply(self, changes: Iterable[RegistryEvent]) -> bool:
        """Apply a watch batch; True if it may change the plan (our echoes do not)."""
        relevant = False
        for change in changes:
            if isinstance(change, ScheduleChanged) and self._is_echo_or_stale(change):
                continue
            self._change(change)
            # Drain progress is written by this engine only: its echo changes nothing.
            relevant = relevant or not isinstance(change, DrainStatusChanged)
        return relevant

    def _is_echo_or_stale(self, change: ScheduleChanged) -> bool:
        key = (change.machine_id, change.name)
        if key not in self.pending:
            return False
        if self.pending[key] == change.entry:
            del self.pending[key]
        # Our echo changes nothing (the view already has it); a non-matching event
        # for a pending key is older than our write (watches deliver in order).
        return True

    def _change(self, change: RegistryEvent) -> None:
        match change:
            case JobChanged(name=name, job=None):
                self.jobs.pop(name, None)
            case JobChanged(name=name, job=Job() as job):
                self.jobs[name] = job
            case BodyChanged(hash=hash, body=None):
                self.bodies.pop(hash, None)
            case BodyChanged(hash=hash, body=str() as body):
                if hash not in self.bodies:
                    self.bodies[hash] = _parse_body(body)
            case ScheduleChanged(machine_id=machine_id, name=name, entry=None):
                self._unschedule(name, machine_id)
            case ScheduleChanged(machine_id=machine_id, name=name, entry=Job() as entry):
                self.schedule.setdefault(name, {})[machine_id] = entry
            case MetadataChanged(machine_id=machine_id, key=key, removed=True):
                metadata = self.dynamic_metadata.get(machine_id, {})
                metadata.pop(key, None)
                if not metadata:
                    self.dynamic_metadata.pop(machine_id, None)
                self._effective_machines = None
            case MetadataChanged(machine_id=machine_id, key=key, value=value):
                self.dynamic_metadata.setdefault(machine_id, {})[key] = value
                self._effective_machines = None
            case MachineChanged(machine_id=machine_id, machine=None):
                self.machines.pop(machine_id, None)
                self._effective_machines = None
            case MachineChanged(machine_id=machine_id, machine=Machine() as machine):
                self.machines[machine_id] = machine
                self._effective_machines = None
            case CordonChanged(machine_id=machine_id, cordon=cordon):
                if cordon is None:
                    self.cordons.pop(machine_id, None)
                else:
                    self.cordons[machine_id] = cordon
                self._effective_machines = None
            case DrainChanged(machine_id=machine_id, request=request):
                if request is None:
                    self.drains.pop(machine_id, None)
                else:
                    self.drains[machine_id] = request
            case DrainStatusChanged(machine_id=machine_id, status=status):
                if status is None:
                    self.drain_status.pop(machine_id, None)
                else:
                    self.drain_status[machine_id] = status
            case _:
                log.debug("engine view: ignoring %r", change)

    def _unschedule(self, name: str, machine_id: str) -> None:
        entries = self.schedule.get(name)
        if entries is not None:
            entries.pop(machine_id, None)
            if not entries:
                del self.schedule[name]

    # --- planning ---------------------------------------------------------------

    def effective_machines(self) -> dict[str, Machine]:
        """Live machines with dynamic metadata (``None`` hides a key) and cordons overlaid."""
        if self._effective_machines is None:
            result: dict[str, Machine] = {}
            for machine_id, published in self.machines.items():
                machine = published.overlaid(self.dynamic_metadata.get(machine_id, {}))
                cordon = self.cordons.get(machine_id)
                result[machine_id] = machine.cordoned(None if cordon is None else cordon.reason)
            self._effective_machines = result
        return self._effective_machines

    def _sched_unit(self, job: Job) -> SchedUnit | str | None:
        """The scheduler's unit for ``job``; a reason text if it can never be placed;
        None while its body has not arrived yet."""
        cached = self._sched_units.get(job.name)
        if cached is not None and cached[0] == job:
            return cached[1]
        body = self.bodies.get(job.hash)
        if body is None:
            return None  # the body watch lags the job watch: decide next pass
        requirements = self._requirements_of(job.name, job.hash, body)
        unit: SchedUnit | str
        if isinstance(requirements, str):
            unit = requirements
        else:
            unit = SchedUnit(job.name, job.hash, job.desired_state, requirements)
        self._sched_units[job.name] = (job, unit)
        return unit

    def _requirements_of(self, name: str, hash: str, body: _Body) -> Requirements | str:
        key = (name, hash)
        cached = self._requirements.get(key)
        if cached is None:
            cached = _parse_requirements(name, body)
            self._requirements[key] = cached
        return cached

    def cut(self, shielded: Collection[str] = ()) -> Cut:
        """The snapshot for ``plan`` plus what the engine decides without it.

        Units whose body cannot be parsed are kept out of the plan entirely (not
        placed, not moved): they get a reason instead. Units scheduled on a
        ``shielded`` machine (absent, but maybe only because etcd was down: B7)
        are left where they are this pass, like units still waiting for a body.
        """
        units: dict[str, SchedUnit] = {}
        held: dict[str, str] = {}
        waiting: set[str] = set()
        if shielded:
            waiting.update(
                name
                for name, entries in self.schedule.items()
                if not entries.keys().isdisjoint(shielded)
            )
        for name, job in self.jobs.items():
            if name in waiting:
                continue
            unit = self._sched_unit(job)
            if unit is None:
                waiting.add(name)
            elif isinstance(unit, str):
                held[name] = unit
            else:
                units[name] = unit
        # A unit that follows one still waiting waits too: judged now, it would be
        # called unplaceable for a target that is merely not here yet.
        while waiting and (
            late := [
                n for n, u in units.items() if not waiting.isdisjoint(u.requirements.machine_of)
            ]
        ):
            for name in late:
                del units[name]
            waiting.update(late)
        if len(self._sched_units) > len(self.jobs):
            for name in self._sched_units.keys() - self.jobs.keys():
                del self._sched_units[name]
        schedule: dict[str, str] = {}
        removals: list[ScheduleChange] = []
        for name, entries in self.schedule.items():
            if name in self.jobs and name not in units:
                continue  # held or waiting: neither placed nor moved this pass
            # A destroyed unit stays in the snapshot so the planner unschedules it
            # with its reason; a second machine (only possible by hand) is dropped.
            if len(entries) == 1:
                schedule[name] = next(iter(entries))
                continue
            machine_ids = sorted(entries)
            schedule[name] = machine_ids[0]
            removals.extend(ScheduleChange(name, m, None) for m in machine_ids[1:])
        snapshot = Snapshot(units=units, machines=self.effective_machines(), schedule=schedule)
        return Cut(snapshot, held, frozenset(waiting), tuple(removals))

    def writes(
        self, cut: Cut, plan: Plan, drains: Mapping[str, DrainStatus] | None = None
    ) -> PassWrites:
        """Turn a plan into this pass's writes: removals first, then placements and
        rewrites; reasons only where they change; ``drains`` progress as given."""
        removals = list(cut.removals)
        removals.extend(ScheduleChange(u.name, u.machine_id, None) for u in plan.unschedule)
        unscheduled = {(c.name, c.machine_id) for c in removals}
        puts: list[ScheduleChange] = []
        for placement in plan.place:
            placed = self.jobs[placement.name]
            puts.append(
                ScheduleChange(
                    placement.name, placement.machine_id, placed.hash, placed.desired_state
                )
            )
        placed_now = {(c.name, c.machine_id) for c in puts}
        rewritten = 0
        for name, machine_id in cut.snapshot.schedule.items():
            if (name, machine_id) in unscheduled or (name, machine_id) in placed_now:
                continue
            job = self.jobs.get(name)
            if job is None or job.desired_state is DesiredState.INACTIVE:
                continue  # the planner unschedules it
            entry = self.schedule[name][machine_id]
            if entry.hash != job.hash or entry.desired_state != job.desired_state:
                puts.append(ScheduleChange(name, machine_id, job.hash, job.desired_state))
                rewritten += 1

        # Each reason records what it judged, so a reader can tell when it is stale.
        fingerprint = machine_set_fingerprint(cut.snapshot.machines.values())
        texts = {name: explain(name, rejections) for name, rejections in plan.unplaceable.items()}
        texts.update(cut.held)
        wanted: dict[str, PlacementReason] = {}
        for name, text in texts.items():
            job = self.jobs[name]
            wanted[name] = PlacementReason(text, job.hash, job.desired_state, fingerprint)
        reasons: dict[str, PlacementReason | None] = {}
        for name, why in wanted.items():
            if self.reasons.get(name) != why:
                reasons[name] = why
        for name in self.reasons:
            if name not in wanted and name not in cut.waiting:
                reasons[name] = None  # placed, placeable again, or gone
        return PassWrites(
            changes=(*removals, *puts),
            reasons=reasons,
            placed=len(puts) - rewritten,
            removed=len(removals),
            rewritten=rewritten,
            drains=dict(drains or {}),
        )

    def written(self, writes: PassWrites) -> None:
        """Record a successful ``apply_schedule`` so the next pass builds on it
        before the watch echoes arrive."""
        for change in writes.changes:
            if change.hash is None:
                self._unschedule(change.name, change.machine_id)
            else:
                entry = Job(change.name, change.hash, change.desired)
                self.schedule.setdefault(change.name, {})[change.machine_id] = entry
        for name, why in writes.reasons.items():
            if why is None:
                self.reasons.pop(name, None)
            else:
                self.reasons[name] = why
        self.drain_status.update(writes.drains)

    def expect(self, writes: PassWrites) -> None:
        """Mark the keys about to be written, before the write: its echo may
        arrive before ``apply_schedule`` returns."""
        for change in writes.changes:
            expected = (
                None if change.hash is None else Job(change.name, change.hash, change.desired)
            )
            self.pending[(change.machine_id, change.name)] = expected


def _parse_body(text: str) -> _Body:
    try:
        return _Body(UnitFile.parse(text))
    except FleetError as exc:
        return _Body(None, f"invalid unit file: {exc}")


def _parse_requirements(name: str, body: _Body) -> Requirements | str:
    if body.unit_file is None:
        return body.error or "invalid unit file"
    try:
        return parse_requirements(name, body.unit_file)
    except FleetError as exc:
        # Submit-time validation should have refused it; never crash the engine on it.
        return f"invalid [X-Fleet] section: {exc}"
