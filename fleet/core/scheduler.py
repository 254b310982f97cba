"""The scheduler: ``plan(snapshot) -> Plan``, fleet's engine reconcile pass as a pure function.

Given the units, the live machines and the current schedule (unit -> machine
for non-global units), :func:`plan` decides which units to unschedule and where
to place the others, with a named :class:`~fleet.core.reasons.Reason` for every
decision and, for a unit that fits nowhere, one
:class:`Rejection` per machine naming the ``[X-Fleet]`` rule that ruled it out.
Placement is fleet's: the least-loaded machine (fewest units, ties by machine
id) that passes MachineID -> MachineMetadata -> MachineOf -> Conflicts ->
Replaces. Feasibility is checked only against candidates that indexes yield
(machine id, MachineOf target, ``key=value`` metadata, a lazily invalidated
heap ordered by load), so a pass over 10,000 units and 1,000 machines stays
well under a second. ``docs/scheduling.md`` describes every rule. The module
also decides which global units a machine runs (:func:`global_units_for`).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fleet.core.matching import GlobSet, glob_match, glob_set, metadata_matches, unmet_metadata
from fleet.core.model import DesiredState, Machine
from fleet.core.reasons import Reason, Rule
from fleet.core.requirements import MetadataConstraint, MetadataOp, Requirements

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
    """One consistent view of the cluster; ``schedule`` maps non-global unit -> machine id."""

    units: Mapping[str, SchedUnit]
    machines: Mapping[str, Machine]
    schedule: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one machine cannot take a unit: the first rule that failed and how."""

    machine_id: str
    rule: Rule
    detail: str

    def __str__(self) -> str:
        return f"{_short(self.machine_id)}: {self.rule}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Placement:
    name: str
    machine_id: str
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.name} -> {_short(self.machine_id)}: {self.reason.text(self.detail)}"


@dataclass(frozen=True, slots=True)
class Unscheduling:
    name: str
    machine_id: str
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.name} <- {_short(self.machine_id)}: {self.reason.text(self.detail)}"


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
    globals_ = sorted(
        (u for u in units if u.is_global and u.desired is not DesiredState.INACTIVE),
        key=lambda u: u.name,
    )
    return _admit_globals(machine.metadata, globals_)


def explain(name: str, rejections: Sequence[Rejection]) -> str:
    """One paragraph saying why ``name`` could not be placed, grouped by rule.

    Up to three machines rejected for the same reason are named (by short id);
    more are counted, so the text stays short on a large cluster."""
    if not rejections:
        return f"{name} cannot be placed: there are no machines in the cluster."
    total = len(rejections)
    where = "the only machine" if total == 1 else f"any of the {total} machines"
    by_rule: dict[Rule, dict[str, list[str]]] = {}
    for r in sorted(rejections, key=lambda r: (r.rule.order, r.machine_id)):
        by_rule.setdefault(r.rule, {}).setdefault(r.detail, []).append(r.machine_id)
    sentences = [f"{name} cannot be placed on {where}."]
    for rule, groups in by_rule.items():
        shown = [f"{detail} [{_machines_text(ids)}]" for detail, ids in list(groups.items())[:3]]
        if len(groups) > 3:
            rest = sum(len(ids) for ids in list(groups.values())[3:])
            shown.append(f"and {rest} more {_plural(rest, 'machine')}")
        sentences.append(f"{rule}: {'; '.join(shown)}.")
    return " ".join(sentences)


_NAMED_MACHINES = 3  # a small cluster's machines are named; a larger group is counted


def _machines_text(ids: Sequence[str]) -> str:
    if len(ids) > _NAMED_MACHINES:
        return f"on {len(ids)} machines"
    shorts = [_short(i) for i in ids]
    if len(shorts) == 1:
        return f"on {shorts[0]}"
    return f"on {', '.join(shorts[:-1])} and {shorts[-1]}"


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def _short(machine_id: str) -> str:
    return machine_id[:8]


def _conflicts(a: str, a_globs: tuple[str, ...], b: str, b_globs: tuple[str, ...]) -> bool:
    """fleet's symmetric Conflicts: either unit's globs match the other's name."""
    return glob_set(a_globs).matches(b) or glob_set(b_globs).matches(a)


def _admit_globals(metadata: Mapping[str, str], globals_: Sequence[SchedUnit]) -> list[str]:
    accepted: list[SchedUnit] = []
    for u in globals_:
        req = u.requirements
        if req.metadata and not metadata_matches(req.metadata, metadata):
            continue
        if any(
            _conflicts(u.name, req.conflicts, a.name, a.requirements.conflicts) for a in accepted
        ):
            continue
        accepted.append(u)
    return [u.name for u in accepted]


_HeapEntry = tuple[int, str, int]  # (load, machine id, version): valid while version is current
_MetaSignature = tuple[MetadataConstraint, ...]  # canonical: deduplicated and sorted


class _Planner:
    """The mutable working state of one pass; lives only inside :func:`plan`."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        # Sorting here makes every later iteration independent of the caller's dict order.
        self.units: dict[str, SchedUnit] = {n: snapshot.units[n] for n in sorted(snapshot.units)}
        self.machines: dict[str, Machine] = {
            m: snapshot.machines[m] for m in sorted(snapshot.machines)
        }
        self.peers: dict[str, tuple[str, ...]] = {}
        self.followers: dict[str, list[str]] = {}
        for name, unit in self.units.items():
            # A unit that names itself in MachineOf is trivially with itself.
            peers = tuple(dict.fromkeys(p for p in unit.requirements.machine_of if p != name))
            self.peers[name] = peers
            for p in peers:
                self.followers.setdefault(p, []).append(name)

        globals_ = [
            u for u in self.units.values() if u.is_global and u.desired is not DesiredState.INACTIVE
        ]
        # Identical metadata admits identical global units (Nomad's "computed class").
        by_class: dict[frozenset[tuple[str, str]], tuple[str, ...]] = {}
        self.meta_class: dict[str, frozenset[tuple[str, str]]] = {}
        self.globals_on: dict[str, tuple[str, ...]] = {}
        self.global_machines: dict[str, list[str]] = {u.name: [] for u in globals_}
        for mid, machine in self.machines.items():
            cls = frozenset(machine.metadata.items())
            self.meta_class[mid] = cls
            if cls not in by_class:
                by_class[cls] = tuple(_admit_globals(machine.metadata, globals_))
            self.globals_on[mid] = by_class[cls]
            for g in by_class[cls]:
                self.global_machines[g].append(mid)
        self.global_sets = {mid: frozenset(gs) for mid, gs in self.globals_on.items()}

        # Current schedule, units per machine (dicts keep a deterministic order), and the
        # units per machine that carry Conflicts or Replaces globs.
        self.schedule: dict[str, str] = {}
        self.on_machine: dict[str, dict[str, None]] = {m: {} for m in self.machines}
        self.holders: dict[str, dict[str, GlobSet]] = {m: {} for m in self.machines}
        self.replacers: dict[str, dict[str, None]] = {m: {} for m in self.machines}
        for mid, names in self.globals_on.items():
            for g in names:
                globs = self.units[g].requirements.conflicts
                if globs:
                    self.holders[mid][g] = glob_set(globs)

        self.unscheduled: dict[str, Unscheduling] = {}
        self.placements: dict[str, Placement] = {}
        self.unplaceable: dict[str, tuple[Rejection, ...]] = {}
        self._replaces_memo: dict[tuple[str, str], bool] = {}

        # Filled in by _prepare_placement.
        self.load: dict[str, int] = {}
        self.version: dict[str, int] = {}
        self.heap: list[_HeapEntry] = []
        self.heaps_of: dict[str, list[list[_HeapEntry]]] = {}
        self.meta_heaps: dict[_MetaSignature, list[_HeapEntry]] = {}
        self.meta_index: dict[tuple[str, str], list[str]] | None = None
        self.meta_memo: dict[tuple[_MetaSignature, frozenset[tuple[str, str]]], bool] = {}
        self.short_ids: dict[str, list[str]] = {}

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
        for name in sorted(self.snapshot.schedule):
            mid = self.snapshot.schedule[name]
            unit = self.units.get(name)
            if unit is None:
                self._record_unschedule(name, mid, Reason.UNIT_DESTROYED, "")
            elif unit.is_global:
                self._record_unschedule(name, mid, Reason.NOW_GLOBAL, "")
            elif unit.desired is DesiredState.INACTIVE:
                self._record_unschedule(name, mid, Reason.DESIRED_INACTIVE, "")
            elif mid not in self.machines:
                detail = f"machine {mid} is no longer in the cluster"
                self._record_unschedule(name, mid, Reason.MACHINE_GONE, detail)
            else:
                self.schedule[name] = mid

        # Units are admitted to their machine in name order, so of two conflicting units
        # sharing a machine (fleet #707) the earlier name stays, as with global units.
        for name, mid in list(self.schedule.items()):
            unit = self.units[name]
            rejection = self._check(unit, mid, placing=False)
            if rejection is None:
                self._add(name, mid)
                continue
            gone = [p for p in self.peers[name] if p in self.unscheduled]
            if rejection.rule is Rule.MACHINE_OF and gone:
                self._unschedule(name, Reason.FOLLOWS_UNSCHEDULED, f"follows {gone[0]}")
            else:
                self._unschedule(name, Reason.RULES_BROKEN, f"{rejection.rule}: {rejection.detail}")

        for name in list(self.schedule):
            if name not in self.schedule or not self.units[name].requirements.replaces:
                continue
            mid = self.schedule[name]
            for other in list(self.on_machine[mid]):
                if other != name and self._replaces(name, other):
                    self._unschedule(other, Reason.REPLACED, f"replaced by {name}")

        self._unschedule_followers(list(self.unscheduled))

    def _place_unscheduled(self) -> None:
        """Step 2: place every unscheduled active unit, targets before their followers."""
        self._prepare_placement()
        pending = [
            name
            for name, u in self.units.items()
            if name not in self.schedule
            and not u.is_global
            and u.desired is not DesiredState.INACTIVE
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
                if name in self.schedule:
                    continue
                unit = self.units[name]
                mid = self._choose(unit)
                if mid is None:
                    failed[name] = epoch
                    continue
                failed.pop(name, None)
                displaced = self._place(unit, mid)
                if displaced:
                    epoch += 1
                    queue.extendleft(reversed(self._targets_first(displaced)))
            retry = [n for n, e in failed.items() if e < epoch]
            if not retry:
                break
            queue.extend(self._targets_first(sorted(retry)))
        for name in sorted(failed):
            self.unplaceable[name] = self._rejections(self.units[name])

    # -- bookkeeping --------------------------------------------------------------------------

    def _add(self, name: str, mid: str) -> None:
        self.schedule[name] = mid
        self.on_machine[mid][name] = None
        req = self.units[name].requirements
        if req.conflicts:
            self.holders[mid][name] = glob_set(req.conflicts)
        if req.replaces:
            self.replacers[mid][name] = None

    def _record_unschedule(self, name: str, mid: str, reason: Reason, detail: str) -> None:
        self.unscheduled[name] = Unscheduling(name, mid, reason, detail)

    def _unschedule(self, name: str, reason: Reason, detail: str) -> None:
        mid = self.schedule.pop(name)
        if name in self.on_machine[mid]:
            del self.on_machine[mid][name]
            self.holders[mid].pop(name, None)
            self.replacers[mid].pop(name, None)
            if self.load:
                self._set_load(mid, -1)
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
            for f in self.followers.get(target, ()):
                if f in self.schedule:
                    self._unschedule(f, Reason.FOLLOWS_UNSCHEDULED, f"follows {target}")
                    out.append(f)
                    work.append(f)
        return out

    def _replaces(self, a: str, b: str) -> bool:
        """Whether ``a`` displaces ``b``: a circular Replaces pair is ignored for both."""
        key = (a, b)
        memo = self._replaces_memo.get(key)
        if memo is None:
            ra = self.units[a].requirements.replaces
            rb = self.units[b].requirements.replaces if b in self.units else ()
            memo = glob_set(ra).matches(b) and not glob_set(rb).matches(a)
            self._replaces_memo[key] = memo
        return memo

    def _targets_first(self, names: Sequence[str]) -> list[str]:
        """``names`` in their order, except that a unit comes after the MachineOf targets
        and the replacers among ``names`` (an iterative depth-first walk; cycles are cut).

        Placing a replacer first lets its replaced unit simply avoid it; the other way
        round the replaced unit would be displaced in the next pass."""
        wanted = set(names)
        replacers = self._replacers_among(names, wanted)
        seen: set[str] = set()
        out: list[str] = []
        for root in names:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter((*self.peers[root], *replacers.get(root, ()))))]
            while stack:
                node, before = stack[-1]
                for p in before:
                    if p in wanted and p not in seen:
                        seen.add(p)
                        stack.append((p, iter((*self.peers[p], *replacers.get(p, ())))))
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
                if r != u and self._replaces(u, r):
                    out.setdefault(r, []).append(u)
        return out

    # -- feasibility --------------------------------------------------------------------------

    def _present(self, name: str, mid: str) -> bool:
        return self.schedule.get(name) == mid or name in self.global_sets[mid]

    def _check(self, unit: SchedUnit, mid: str, *, placing: bool) -> Rejection | None:
        """The first rule that rules ``mid`` out for ``unit``, or None when it fits.

        Replaces is checked only when placing: for units already in place, step 1
        handles it by moving the replaced unit away."""
        machine = self.machines[mid]
        req = unit.requirements
        name = unit.name
        if req.machine_id is not None and not machine.matches_id(req.machine_id):
            return Rejection(
                mid, Rule.MACHINE_ID, f"MachineID={req.machine_id} names another machine"
            )
        if req.metadata and not metadata_matches(req.metadata, machine.metadata):
            unmet = " and ".join(unmet_metadata(req.metadata, machine.metadata))
            return Rejection(mid, Rule.MACHINE_METADATA, unmet)
        for p in self.peers[name]:
            if not self._present(p, mid):
                return Rejection(mid, Rule.MACHINE_OF, self._absent_peer(p))
        here = self.on_machine[mid]
        if req.conflicts:
            mine = glob_set(req.conflicts)
            for other in (*here, *self.globals_on[mid]):
                if other != name and mine.matches(other):
                    detail = f"{other} runs there and matches Conflicts={mine.first(other)}"
                    return Rejection(mid, Rule.CONFLICTS, detail)
        for holder, globs in self.holders[mid].items():
            if holder != name and globs.matches(name):
                detail = f"{holder} runs there and has Conflicts={globs.first(name)}"
                return Rejection(mid, Rule.CONFLICTS, detail)
        if placing:
            for other in self.replacers[mid]:
                if other != name and self._replaces(other, name):
                    detail = f"{other} runs there and replaces it"
                    return Rejection(mid, Rule.REPLACES, detail)
            if req.replaces:
                for other in here:
                    if other == name or not self._replaces(name, other):
                        continue
                    if other in self.peers[name]:
                        detail = f"it would displace {other}, which it follows (MachineOf)"
                        return Rejection(mid, Rule.REPLACES, detail)
                    if other in self.placements:
                        detail = f"it would displace {other}, placed there in this same pass"
                        return Rejection(mid, Rule.REPLACES, detail)
        return None

    def _absent_peer(self, peer: str) -> str:
        unit = self.units.get(peer)
        if unit is None:
            return f"follows {peer}, which does not exist"
        if unit.is_global:
            return f"follows global unit {peer}, which does not run there"
        where = self.schedule.get(peer)
        if where is None:
            return f"follows {peer}, which is not scheduled"
        return f"follows {peer}, which is on {_short(where)}"

    def _rejections(self, unit: SchedUnit) -> tuple[Rejection, ...]:
        out = []
        for mid in self.machines:
            rejection = self._check(unit, mid, placing=True)
            if rejection is not None:
                out.append(rejection)
        return tuple(out)

    # -- placement ----------------------------------------------------------------------------

    def _prepare_placement(self) -> None:
        for mid in self.machines:
            self.load[mid] = len(self.on_machine[mid]) + len(self.globals_on[mid])
            self.version[mid] = 0
            self.heaps_of[mid] = []
            if len(mid) >= 8:
                self.short_ids.setdefault(mid[:8], []).append(mid)
        self.heap = [(self.load[m], m, 0) for m in self.machines]
        heapq.heapify(self.heap)

    def _set_load(self, mid: str, delta: int) -> None:
        load = self.load[mid] + delta
        version = self.version[mid] + 1
        self.load[mid] = load
        self.version[mid] = version
        entry = (load, mid, version)
        heapq.heappush(self.heap, entry)
        for heap in self.heaps_of[mid]:
            heapq.heappush(heap, entry)

    def _choose(self, unit: SchedUnit) -> str | None:
        """The least-loaded feasible machine, looked for among indexed candidates only."""
        req = unit.requirements
        if req.machine_id is not None:
            wanted = req.machine_id
            ids = [wanted] if wanted in self.machines else []
            if len(wanted) == 8:
                ids += [m for m in self.short_ids.get(wanted, ()) if m != wanted]
            return self._first_fit(unit, ids)
        peers = self.peers[unit.name]
        if peers:
            candidates: set[str] | None = None
            for p in peers:
                where = self._peer_machines(p)
                candidates = where if candidates is None else candidates & where
                if not candidates:
                    return None
            return self._first_fit(unit, candidates or ())
        if not req.metadata:
            return self._search(self.heap, unit)
        return self._search(self._metadata_heap(_meta_signature(req.metadata)), unit)

    def _peer_machines(self, peer: str) -> set[str]:
        where = self.schedule.get(peer)
        if where is not None:
            return {where}
        if peer in self.global_machines:
            return set(self.global_machines[peer])
        return set()

    def _first_fit(self, unit: SchedUnit, candidates: Iterable[str]) -> str | None:
        for mid in sorted(candidates, key=lambda m: (self.load[m], m)):
            if self._check(unit, mid, placing=True) is None:
                return mid
        return None

    def _search(self, heap: list[_HeapEntry], unit: SchedUnit) -> str | None:
        """Walk ``heap`` in (load, machine id) order to the first feasible machine,
        dropping stale entries and restoring the valid ones it looked at."""
        looked: list[_HeapEntry] = []
        found = None
        while heap:
            entry = heapq.heappop(heap)
            if entry[2] != self.version[entry[1]]:
                continue
            looked.append(entry)
            if self._check(unit, entry[1], placing=True) is None:
                found = entry[1]
                break
        for entry in looked:
            heapq.heappush(heap, entry)
        return found

    def _metadata_heap(self, signature: _MetaSignature) -> list[_HeapEntry]:
        """A load heap over the machines whose metadata satisfies ``signature``, built on
        first use (from the ``key=value`` index when the signature has ``=`` terms) and
        kept current by :meth:`_set_load`. Without it, a walk of the global heap would
        step over every ineligible machine that happens to be less loaded."""
        heap = self.meta_heaps.get(signature)
        if heap is not None:
            return heap
        candidates: Iterable[str] = self.machines
        equal: dict[str, set[str]] = {}
        for c in signature:
            if c.op is MetadataOp.EQ:
                equal.setdefault(c.key, set()).add(c.value)
        if equal:
            index = self._meta_index()
            found: set[str] | None = None
            for key, values in equal.items():
                group = {m for v in values for m in index.get((key, v), ())}
                found = group if found is None else found & group
            candidates = sorted(found or ())
        eligible = [m for m in candidates if self._metadata_ok(signature, m)]
        heap = [(self.load[m], m, self.version[m]) for m in eligible]
        heapq.heapify(heap)
        for m in eligible:
            self.heaps_of[m].append(heap)
        self.meta_heaps[signature] = heap
        return heap

    def _meta_index(self) -> dict[tuple[str, str], list[str]]:
        if self.meta_index is None:
            self.meta_index = {}
            for mid, machine in self.machines.items():
                for item in machine.metadata.items():
                    self.meta_index.setdefault(item, []).append(mid)
        return self.meta_index

    def _metadata_ok(self, signature: _MetaSignature, mid: str) -> bool:
        key = (signature, self.meta_class[mid])
        ok = self.meta_memo.get(key)
        if ok is None:
            ok = metadata_matches(signature, self.machines[mid].metadata)
            self.meta_memo[key] = ok
        return ok

    def _place(self, unit: SchedUnit, mid: str) -> list[str]:
        """Place ``unit`` on ``mid``; return the units it displaced and their followers."""
        name = unit.name
        req = unit.requirements
        displaced = []
        if req.replaces:
            displaced = [o for o in self.on_machine[mid] if o != name and self._replaces(name, o)]
        load = self.load[mid]
        detail = f"the machine held {load} {_plural(load, 'unit')}"
        if displaced:
            detail += f"; displaced {', '.join(displaced)}"
        if req.machine_id is not None:
            reason = Reason.PLACED_MACHINE_ID
        elif self.peers[name]:
            reason = Reason.PLACED_MACHINE_OF
        else:
            reason = Reason.PLACED_LEAST_LOADED
        for other in displaced:
            self._unschedule(other, Reason.REPLACED, f"replaced by {name}")
        moved = displaced + self._unschedule_followers(displaced)
        self._add(name, mid)
        self._set_load(mid, +1)
        self.placements[name] = Placement(name, mid, reason, detail)
        return moved


def _meta_signature(constraints: Sequence[MetadataConstraint]) -> _MetaSignature:
    return tuple(sorted(set(constraints), key=lambda c: (c.key, c.op, c.value)))
