"""The scheduler: ``plan(snapshot) -> Plan``, fleet's engine reconcile pass as a pure function.

Given the units, the live machines and the current schedule (unit -> machine
for non-global units), :func:`plan` decides which units to unschedule and where
to place the others, with a named :class:`~fleet.core.reasons.Reason` for every
decision and, for a unit that fits nowhere, one
:class:`~fleet.core.explain.Rejection` per machine naming the ``[X-Fleet]`` rule
that ruled it out. Placement is fleet's: the least-loaded machine (fewest units,
ties by machine id) that passes the checkers of :mod:`fleet.core.checks`, asked
only about the candidates :mod:`fleet.core.candidates` yields; a ``SpreadBy``
instance first picks the value of its key holding the fewest instances of its
template. This module holds
the public records and the planner's two steps; ``docs/scheduling.md`` describes
every rule. The words live in :mod:`fleet.core.explain`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fleet.core.candidates import Candidates
from fleet.core.checks import Stacks, admit_globals, first_rejection, globals_by_machine
from fleet.core.explain import Rejection, explain, plural, short_id
from fleet.core.matching import glob_match, glob_set
from fleet.core.model import DesiredState, Machine
from fleet.core.occupancy import Occupancy
from fleet.core.reasons import Reason, Rule
from fleet.core.requirements import Requirements

__all__ = [
    "Placement",
    "Plan",
    "Rejection",
    "SchedUnit",
    "Snapshot",
    "Unscheduling",
    "explain",
    "global_units_for",
    "plan",
]


@dataclass(frozen=True, slots=True)
class SchedUnit:
    """What the scheduler knows of one unit: its identity, desired state and requirements."""

    name: str
    hash: str
    desired: DesiredState
    requirements: Requirements

    @property
    def is_global(self) -> bool:
        return self.requirements.is_global


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the cluster; ``schedule`` maps non-global unit -> machine id.
    ``evict`` maps a unit to the machine it must leave in this pass (a drain moving it;
    its MachineOf followers go with it); a unit in ``hold`` is not placed in this pass
    (a drain waits for the old copy to stop before it starts the new one)."""

    units: Mapping[str, SchedUnit]
    machines: Mapping[str, Machine]
    schedule: Mapping[str, str] = field(default_factory=dict)
    evict: Mapping[str, str] = field(default_factory=dict)
    hold: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Placement:
    name: str
    machine_id: str
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.name} -> {short_id(self.machine_id)}: {self.reason.text(self.detail)}"


@dataclass(frozen=True, slots=True)
class Unscheduling:
    name: str
    machine_id: str
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.name} <- {short_id(self.machine_id)}: {self.reason.text(self.detail)}"


@dataclass(frozen=True)
class Plan:
    """The decisions of one pass. Apply ``unschedule`` before ``place``: a unit may
    leave one machine and land on another in the same plan."""

    unschedule: tuple[Unscheduling, ...] = ()
    place: tuple[Placement, ...] = ()
    unplaceable: Mapping[str, tuple[Rejection, ...]] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        """True when applying the plan would change the schedule."""
        return bool(self.unschedule or self.place)

    def result(self, snapshot: Snapshot) -> dict[str, str]:
        """The schedule after applying this plan to ``snapshot.schedule``."""
        out = dict(snapshot.schedule)
        for u in self.unschedule:
            if out.get(u.name) == u.machine_id:
                del out[u.name]
        for p in self.place:
            out[p.name] = p.machine_id
        return out


def plan(snapshot: Snapshot) -> Plan:
    """One reconcile pass of the engine over ``snapshot`` (see the module docstring)."""
    return _Planner(snapshot).run()


def global_units_for(machine: Machine, units: Iterable[SchedUnit]) -> list[str]:
    """The global units ``machine`` runs, in name order, as fleet's agent decided it:
    those whose MachineMetadata the machine satisfies and that conflict with no
    global unit accepted before them in name order. Non-global units and units
    whose desired state is inactive are ignored."""
    return admit_globals(machine.metadata, _active_globals(units))


def _active_globals(units: Iterable[SchedUnit]) -> list[SchedUnit]:
    return sorted(
        (u for u in units if u.is_global and u.desired is not DesiredState.INACTIVE),
        key=lambda u: u.name,
    )


class _Planner:
    """The decisions of one pass; lives only inside :func:`plan`. What each machine
    holds is in ``occ``, the placement indexes in ``candidates`` (from step 2 on)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        # Sorting here makes every later iteration independent of the caller's dict order.
        self.units: dict[str, SchedUnit] = {n: snapshot.units[n] for n in sorted(snapshot.units)}
        self.machines: dict[str, Machine] = {
            m: snapshot.machines[m] for m in sorted(snapshot.machines)
        }
        globals_on = globals_by_machine(self.machines, _active_globals(self.units.values()))
        self.occ = Occupancy(self.units, self.machines, globals_on)
        self.stacks = Stacks(
            self.units.values(), cordoned=any(m.cordon is not None for m in self.machines.values())
        )
        self.candidates: Candidates | None = None
        self.unscheduled: dict[str, Unscheduling] = {}
        self.placements: dict[str, Placement] = {}
        self.unplaceable: dict[str, tuple[Rejection, ...]] = {}
        # Units left on an absent machine because no other machine could ever run them.
        self.kept_away: set[str] = self._pinned_to_absent()

    # -- the pass -----------------------------------------------------------------------------

    def run(self) -> Plan:
        self._check_scheduled()
        self._place_unscheduled()
        # A unit taken off a machine and put back on the same one is no change at all:
        # dropping the pair spares the agent a needless stop and start.
        for name, u in list(self.unscheduled.items()):
            p = self.placements.get(name)
            if p is not None and p.machine_id == u.machine_id:
                del self.unscheduled[name]
                del self.placements[name]
        return Plan(
            unschedule=tuple(self.unscheduled.values()),
            place=tuple(self.placements.values()),
            unplaceable=dict(sorted(self.unplaceable.items())),
        )

    def _check_scheduled(self) -> None:
        """Step 1: keep each scheduled unit whose machine still satisfies its rules."""
        occ = self.occ
        stacks = self.stacks
        for name in sorted(self.snapshot.schedule):
            mid = self.snapshot.schedule[name]
            unit = self.units.get(name)
            if unit is None:
                self._record_unschedule(name, mid, Reason.UNIT_DESTROYED, "")
            elif unit.is_global:
                self._record_unschedule(name, mid, Reason.NOW_GLOBAL, "")
            elif unit.desired is DesiredState.INACTIVE:
                self._record_unschedule(name, mid, Reason.DESIRED_INACTIVE, "")
            elif name in self.kept_away:
                continue  # pinned to its absent machine: it stays there (B7)
            elif mid not in self.machines:
                detail = f"machine {mid} is no longer in the cluster"
                self._record_unschedule(name, mid, Reason.MACHINE_GONE, detail)
            elif self.snapshot.evict.get(name) == mid:
                self._record_unschedule(name, mid, Reason.DRAINED, f"draining {short_id(mid)}")
            else:
                occ.claim(name, mid)

        # Units are admitted to their machine in name order, so of two conflicting units
        # sharing a machine (fleet #707) the earlier name stays, as with global units.
        for name, mid in list(occ.schedule.items()):
            unit = self.units[name]
            rejection = first_rejection(stacks.keeping(unit), occ, unit, mid)
            if rejection is None:
                occ.add(name, mid)
                continue
            gone = [p for p in occ.peers[name] if p in self.unscheduled]
            if rejection.rule is Rule.MACHINE_OF and gone:
                self._unschedule(name, Reason.FOLLOWS_UNSCHEDULED, f"follows {gone[0]}")
            else:
                self._unschedule(name, Reason.RULES_BROKEN, f"{rejection.rule}: {rejection.detail}")

        for name in list(occ.schedule):
            if name not in occ.schedule or not self.units[name].requirements.replaces:
                continue
            mid = occ.schedule[name]
            for other in list(occ.on_machine[mid]):
                if other != name and occ.replaces(name, other):
                    self._unschedule(other, Reason.REPLACED, f"replaced by {name}")

        self._unschedule_followers(list(self.unscheduled))

    def _place_unscheduled(self) -> None:
        """Step 2: place every unscheduled active unit, targets before their followers."""
        occ = self.occ
        self.candidates = Candidates(
            self.machines,
            {m: len(occ.on_machine[m]) + len(occ.globals_on[m]) for m in self.machines},
        )
        pending = [
            name
            for name, u in self.units.items()
            if name not in occ.schedule
            and not u.is_global
            and u.desired is not DesiredState.INACTIVE
            and name not in self.snapshot.hold
            and name not in self.kept_away
        ]
        queue = deque(self._targets_first(pending))
        # Displacing a unit frees room, so units that failed before a displacement get
        # another try; displacements only ever hit units scheduled before this pass,
        # each at most once, so this loop ends.
        epoch = 0
        failed: dict[str, int] = {}
        while True:
            while queue:
                name = queue.popleft()
                if name in occ.schedule:
                    continue
                unit = self.units[name]
                mid = self._choose(self.candidates, unit)
                if mid is None:
                    failed[name] = epoch
                    continue
                failed.pop(name, None)
                displaced = self._place(self.candidates, unit, mid)
                if displaced:
                    epoch += 1
                    queue.extendleft(reversed(self._targets_first(displaced)))
            retry = [n for n, e in failed.items() if e < epoch]
            if not retry:
                break
            queue.extend(self._targets_first(sorted(retry)))
        for name in sorted(failed):
            self.unplaceable[name] = self._rejections(self.units[name])

    def _pinned_to_absent(self) -> set[str]:
        """The scheduled units whose machine is absent but which no other machine could
        ever run: ``MachineID`` names that machine, or (transitively) every unit they
        follow with ``MachineOf`` is such a unit on that machine. Unscheduling them would
        only restart them when the machine comes back (a cut from etcd longer than
        ``agent_ttl``), so they stay scheduled there until they are destroyed or unloaded."""
        schedule = self.snapshot.schedule
        away = {
            name: mid
            for name, mid in schedule.items()
            if mid not in self.machines
            and (unit := self.units.get(name)) is not None
            and not unit.is_global
            and unit.desired is not DesiredState.INACTIVE
        }
        kept: set[str] = set()
        for name, mid in away.items():
            wanted = self.units[name].requirements.machine_id
            if wanted is not None and (wanted == mid or (len(wanted) == 8 and mid[:8] == wanted)):
                kept.add(name)
        grew = bool(kept)
        while grew:
            grew = False
            for name, mid in away.items():
                peers = self.units[name].requirements.machine_of
                if name in kept or not peers:
                    continue
                if all(p in kept and away[p] == mid for p in peers):
                    kept.add(name)
                    grew = True
        return kept

    # -- bookkeeping --------------------------------------------------------------------------

    def _record_unschedule(self, name: str, mid: str, reason: Reason, detail: str) -> None:
        self.unscheduled[name] = Unscheduling(name, mid, reason, detail)

    def _unschedule(self, name: str, reason: Reason, detail: str) -> None:
        mid, was_there = self.occ.remove(name)
        if was_there and self.candidates is not None:
            self.candidates.set_load(mid, -1)
        if name in self.placements:
            # Placed earlier in this pass: withdrawing that placement is the whole change.
            del self.placements[name]
        else:
            self._record_unschedule(name, mid, reason, detail)

    def _unschedule_followers(self, targets: list[str]) -> list[str]:
        """Unschedule, transitively, the followers of units just unscheduled."""
        out: list[str] = []
        work = deque(targets)
        while work:
            target = work.popleft()
            for f in self.occ.followers.get(target, ()):
                if f in self.occ.schedule:
                    self._unschedule(f, Reason.FOLLOWS_UNSCHEDULED, f"follows {target}")
                    out.append(f)
                    work.append(f)
        return out

    def _targets_first(self, names: Sequence[str]) -> list[str]:
        """``names`` in their order, except that a unit comes after the MachineOf targets
        and the replacers among ``names`` (an iterative depth-first walk; cycles are cut).

        Placing a replacer first lets its replaced unit simply avoid it; the other way
        round the replaced unit would be displaced in the next pass."""
        peers = self.occ.peers
        wanted = set(names)
        replacers = self._replacers_among(names, wanted)
        seen: set[str] = set()
        out: list[str] = []
        for root in names:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter((*peers[root], *replacers.get(root, ()))))]
            while stack:
                node, before = stack[-1]
                for p in before:
                    if p in wanted and p not in seen:
                        seen.add(p)
                        stack.append((p, iter((*peers[p], *replacers.get(p, ())))))
                        break
                else:
                    stack.pop()
                    out.append(node)
        return out

    def _replacers_among(self, names: Sequence[str], wanted: set[str]) -> dict[str, list[str]]:
        """replaced unit -> the units in ``names`` that replace it (literal globs by lookup,
        wildcard globs by a scan of ``names``)."""
        out: dict[str, list[str]] = {}
        for u in names:
            globs = self.units[u].requirements.replaces
            if not globs:
                continue
            matched: set[str] = set()
            for g in globs:
                if glob_set((g,)).is_literal:
                    if g in wanted:
                        matched.add(g)
                else:
                    matched.update(n for n in names if glob_match(g, n))
            for r in sorted(matched):
                if r != u and self.occ.replaces(u, r):
                    out.setdefault(r, []).append(u)
        return out

    # -- placement ----------------------------------------------------------------------------

    def _choose(self, candidates: Candidates, unit: SchedUnit) -> str | None:
        """The least-loaded feasible machine, looked for among indexed candidates only."""
        occ = self.occ
        stack = self.stacks.placing(unit)

        def fits(mid: str) -> bool:
            # Not all(...): a generator per candidate would cost more than the checks.
            for check in stack:  # noqa: SIM110
                if check(occ, unit, mid) is not None:
                    return False
            return True

        req = unit.requirements
        if req.machine_id is not None:
            return candidates.first_fit(candidates.with_machine_id(req.machine_id), fits)
        peers = occ.peers[unit.name]
        if peers:
            where: set[str] | None = None
            for p in peers:
                running = occ.machines_running(p)
                where = running if where is None else where & running
                if not where:
                    return None
            return candidates.first_fit(where or (), fits)
        key = req.spread_by
        if key is not None and unit.name in occ.template_of:
            # The value holding the fewest instances of the template that has a machine
            # passing every rule; already placed instances stay where they are.
            held = occ.spread_counts(occ.template_of[unit.name], key)
            return candidates.spread(fits, req.metadata, key, held)
        return candidates.least_loaded(fits, req.metadata)

    def _rejections(self, unit: SchedUnit) -> tuple[Rejection, ...]:
        stack = self.stacks.placing(unit)
        out = []
        for mid in self.machines:
            rejection = first_rejection(stack, self.occ, unit, mid)
            if rejection is not None:
                out.append(rejection)
        return tuple(out)

    def _place(self, candidates: Candidates, unit: SchedUnit, mid: str) -> list[str]:
        """Place ``unit`` on ``mid``; return the units it displaced and their followers."""
        occ = self.occ
        name = unit.name
        req = unit.requirements
        displaced = []
        if req.replaces:
            displaced = [o for o in occ.on_machine[mid] if o != name and occ.replaces(name, o)]
        load = candidates.load[mid]
        detail = f"the machine held {load} {plural(load, 'unit')}"
        if displaced:
            detail += f"; displaced {', '.join(displaced)}"
        if req.machine_id is not None:
            reason = Reason.PLACED_MACHINE_ID
        elif occ.peers[name]:
            reason = Reason.PLACED_MACHINE_OF
        elif req.spread_by is not None and name in occ.template_of:
            reason = Reason.PLACED_SPREAD
            detail = f"{self._spread_detail(name, req.spread_by, mid)}; {detail}"
        else:
            reason = Reason.PLACED_LEAST_LOADED
        for other in displaced:
            self._unschedule(other, Reason.REPLACED, f"replaced by {name}")
        moved = displaced + self._unschedule_followers(displaced)
        occ.add(name, mid, placed=True)
        candidates.set_load(mid, +1)
        self.placements[name] = Placement(name, mid, reason, detail)
        return moved

    def _spread_detail(self, name: str, key: str, mid: str) -> str:
        """How many instances the chosen value held, before ``name`` joins them."""
        template = self.occ.template_of[name]
        held = self.occ.spread_counts(template, key)
        total = sum(held.values())
        value = self.machines[mid].metadata[key]
        of = f"{total} {plural(total, 'instance')} of {template}"
        return f"{key}={value} held {held.get(value, 0)} of {of}"
