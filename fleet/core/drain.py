"""One step of a drain: which units of a drained machine move now, and how far each got.

The engine leader calls :meth:`DrainTracker.step` once per pass for every drain
that is not finished, with the pass's :class:`~fleet.core.scheduler.Snapshot`
(the drained machine is cordoned in it), the states the agents published for
the units in flight, and the time. A step

* follows every unit in flight: still on the drained machine (its eviction is
  repeated until the engine's write lands), **held** off every machine while the
  drained machine still runs it (so it never runs twice: the old copy stops
  before the new one starts), waiting for a machine, or placed on a new one,
  where it is **healthy** once that machine reports it running (or loaded, for a
  unit only loaded), continuously for the request's ``min_healthy`` seconds; a
  failed launch there marks it failed;
* then, unless the drain is paused or out of time, starts moving more units, up
  to ``max_parallel`` in flight: the units of a machine move in MachineOf groups
  (a unit and the units that follow it go together; a group larger than
  ``max_parallel`` moves alone), in name order. A group pinned by ``MachineID``
  is left running and reported; a group is moved only when a trial plan with it
  evicted places every member elsewhere, so a unit with nowhere to go is left
  running (and reported), never stopped without a replacement;
* and says what the drain as a whole is: draining, paused, or finished (done,
  incomplete, failed, timed out).

Nothing here does I/O or reads a clock; the tracker only remembers, between
passes, since when each unit in flight has looked healthy and at which machine
set a stuck unit was judged (it is judged again when that changes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fleet.core.explain import explain, short_id
from fleet.core.maintenance import (
    DrainPhase,
    DrainRequest,
    DrainStatus,
    MoveState,
    UnitMove,
)
from fleet.core.model import DesiredState, UnitState, machine_set_fingerprint
from fleet.core.outcome import Outcome, launch_outcome
from fleet.core.scheduler import Plan, Snapshot

__all__ = ["DrainPass", "DrainTracker", "drain_groups"]

Planner = Callable[[Snapshot], Plan]


@dataclass
class DrainPass:
    """One engine pass as the drains see it: its ``snapshot``, the ``states`` of the
    units in flight, the wall-clock time ``now`` and the ``planner`` (for trial
    plans); and what the pass must do for them: ``evict`` and ``hold`` into its
    snapshot."""

    snapshot: Snapshot
    states: Mapping[str, Sequence[UnitState]]
    now: float
    planner: Planner
    evict: dict[str, str] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)


def drain_groups(machine_id: str, snapshot: Snapshot) -> list[list[str]]:
    """The units scheduled on ``machine_id`` in MachineOf groups (a unit with every
    unit there that follows it, transitively, or that it follows), by name."""
    here = sorted(n for n, m in snapshot.schedule.items() if m == machine_id)
    on = set(here)
    links: dict[str, set[str]] = {n: set() for n in here}
    for name in here:
        unit = snapshot.units.get(name)
        if unit is None:
            continue
        for target in unit.requirements.machine_of:
            if target in on:
                links[name].add(target)
                links[target].add(name)
    groups: list[list[str]] = []
    seen: set[str] = set()
    for root in here:
        if root in seen:
            continue
        group, work = [], [root]
        seen.add(root)
        while work:
            node = work.pop()
            group.append(node)
            for other in links[node]:
                if other not in seen:
                    seen.add(other)
                    work.append(other)
        groups.append(sorted(group))
    return groups


class DrainTracker:
    """The engine leader's memory of its drains between passes (see the module doc)."""

    def __init__(self) -> None:
        self._healthy_since: dict[tuple[str, str], float] = {}
        self._stuck_at: dict[tuple[str, str], str] = {}

    def forget(self, machine_id: str) -> None:
        for memo in (self._healthy_since, self._stuck_at):
            for key in [k for k in memo if k[0] == machine_id]:
                del memo[key]

    def step(
        self, machine_id: str, request: DrainRequest, status: DrainStatus | None, now: DrainPass
    ) -> DrainStatus:
        """Advance one drain; add its evictions (and a plan made with them) to the
        pass ``now``; return the drain's new status."""
        if status is None or status.started != request.started:
            status = DrainStatus(DrainPhase.DRAINING, request.started)
        units = dict(status.units)
        self._follow(machine_id, request, units, now)
        late = request.timeout is not None and now.now - request.started > request.timeout
        if not request.paused and not late:
            self._start_moves(machine_id, request, units, now)
        return _summary(machine_id, request, units, now.snapshot, late)

    # --- units in flight ---------------------------------------------------------------

    def _follow(
        self, mid: str, request: DrainRequest, units: dict[str, UnitMove], ps: DrainPass
    ) -> None:
        snapshot, states, now, result = ps.snapshot, ps.states, ps.now, ps
        for name, move in list(units.items()):
            if move.state is not MoveState.MOVING:
                continue
            unit = snapshot.units.get(name)
            if unit is None or unit.desired is DesiredState.INACTIVE:
                del units[name]  # destroyed or stopped meanwhile: nothing left to move
                self._healthy_since.pop((mid, name), None)
                continue
            where = snapshot.schedule.get(name)
            if where == mid:
                result.evict[name] = mid  # the eviction has not landed yet
                result.hold.add(name)
                continue
            if where is None:
                if _runs_on(mid, states.get(name, ())):
                    result.hold.add(name)  # never two copies: the old one stops first
                    units[name] = UnitMove(MoveState.MOVING, "", "stopping here")
                else:
                    units[name] = UnitMove(MoveState.MOVING, "", "waiting for a machine")
                continue
            healthy, failure = _health(name, unit.desired, where, mid, states.get(name, ()))
            key = (mid, name)
            if failure:
                units[name] = UnitMove(MoveState.FAILED, where, failure)
                self._healthy_since.pop(key, None)
            elif not healthy:
                units[name] = UnitMove(MoveState.MOVING, where, "starting")
                self._healthy_since.pop(key, None)
            else:
                since = self._healthy_since.setdefault(key, now)
                if now - since >= request.min_healthy:
                    units[name] = UnitMove(MoveState.MOVED, where, "")
                    del self._healthy_since[key]
                else:
                    units[name] = UnitMove(MoveState.MOVING, where, "healthy, settling")

    # --- new moves -----------------------------------------------------------------------

    def _start_moves(
        self, mid: str, request: DrainRequest, units: dict[str, UnitMove], ps: DrainPass
    ) -> None:
        snapshot, planner, result = ps.snapshot, ps.planner, ps
        in_flight = sum(1 for m in units.values() if m.state is MoveState.MOVING)
        machines_now = ""
        for group in drain_groups(mid, snapshot):
            if any(units.get(n, _NONE).state is MoveState.MOVING for n in group):
                continue
            free = request.max_parallel - in_flight
            if free <= 0 or (len(group) > free and in_flight):
                return
            pinned = _pinned(mid, group, snapshot)
            if pinned:
                for name in group:
                    units[name] = UnitMove(MoveState.PINNED, "", pinned)
                continue
            machines_now = machines_now or machine_set_fingerprint(snapshot.machines.values())
            if all(self._stuck_at.get((mid, n)) == machines_now for n in group):
                continue  # judged stuck against this very machine set
            evict = {**result.evict, **dict.fromkeys(group, mid)}
            trial = planner(replace(snapshot, evict=evict))
            placed = {p.name: p.machine_id for p in trial.place}
            if all(placed.get(n, mid) != mid for n in group):
                # Evicted now, placed once stopped here (the trial's machine is only
                # a forecast: the pass that places it chooses again).
                result.evict = evict
                result.hold.update(group)
                for name in group:
                    units[name] = UnitMove(MoveState.MOVING, "", "stopping here")
                    self._stuck_at.pop((mid, name), None)
                in_flight += len(group)
                continue
            why = _why_stuck(group, placed, mid, trial)
            for name in group:
                units[name] = UnitMove(MoveState.STUCK, "", why)
                self._stuck_at[(mid, name)] = machines_now


_NONE = UnitMove(MoveState.MOVED)  # stands for "not in the status" in lookups


def _pinned(mid: str, group: Sequence[str], snapshot: Snapshot) -> str:
    machine = snapshot.machines.get(mid)
    for name in group:
        unit = snapshot.units.get(name)
        wanted = None if unit is None else unit.requirements.machine_id
        if wanted is not None and (machine is None or machine.matches_id(wanted)):
            if len(group) == 1:
                return f"MachineID={wanted} pins it to this machine"
            return f"MachineID={wanted} pins {name} (and what follows it) to this machine"
    return ""


def _why_stuck(group: Sequence[str], placed: Mapping[str, str], mid: str, trial: Plan) -> str:
    for name in group:
        if placed.get(name, mid) == mid:
            rejections = trial.unplaceable.get(name, ())
            if rejections:
                return f"nowhere to go: {explain(name, rejections)}"
            return f"nowhere to go: {name} could not be placed elsewhere"
    return "nowhere to go"


def _runs_on(mid: str, states: Sequence[UnitState]) -> bool:
    """Whether ``mid`` still publishes the unit as running (or on its way up or down)."""
    return any(
        s.machine_id == mid
        and s.active_state in ("active", "activating", "deactivating", "reloading")
        for s in states
    )


def _health(
    name: str, desired: DesiredState, where: str, old: str, states: Sequence[UnitState]
) -> tuple[bool, str]:
    """(healthy, failure): ``where`` runs it as wanted and ``old`` no longer does."""
    new_state = next((s for s in states if s.machine_id == where), None)
    stopped_there = not _runs_on(old, states)
    if new_state is None:
        return False, ""
    if desired is DesiredState.LOADED:
        return stopped_there and new_state.load_state == "loaded", new_state.error
    verdict = launch_outcome(new_state)
    if verdict.outcome is Outcome.FAILED:
        return False, f"failed on {short_id(where)}: {verdict.detail}"
    good = verdict.outcome in (Outcome.RUNNING, Outcome.EXITED)
    return stopped_there and good, ""


def _summary(
    mid: str,
    request: DrainRequest,
    units: dict[str, UnitMove],
    snapshot: Snapshot,
    late: bool,
) -> DrainStatus:
    counts: dict[MoveState, int] = {}
    for move in units.values():
        counts[move.state] = counts.get(move.state, 0) + 1
    detail = ", ".join(f"{counts[s]} {s}" for s in MoveState if counts.get(s))
    left = {n for n, m in snapshot.schedule.items() if m == mid} - {
        n for n, m in units.items() if m.state in (MoveState.PINNED, MoveState.STUCK)
    }
    ordered = dict(sorted(units.items()))
    if counts.get(MoveState.MOVING) or left:
        if late:
            phase = DrainPhase.TIMED_OUT
        elif request.paused:
            phase = DrainPhase.PAUSED
        else:
            phase = DrainPhase.DRAINING
    elif counts.get(MoveState.FAILED):
        phase = DrainPhase.FAILED
    elif counts.get(MoveState.PINNED) or counts.get(MoveState.STUCK):
        phase = DrainPhase.INCOMPLETE
    else:
        phase = DrainPhase.DONE
    if mid not in snapshot.machines and not counts.get(MoveState.MOVING):
        phase, detail = DrainPhase.DONE, "the machine left the cluster"
    return DrainStatus(phase, request.started, ordered, detail or "nothing to move")
