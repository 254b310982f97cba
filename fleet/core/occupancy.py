"""What every machine holds during one scheduling pass: the facts the rules judge.

:class:`Occupancy` is the pass's picture of the cluster that the checkers of
:mod:`fleet.core.checks` read: the units scheduled on each machine and the global
units it admits, which of them carry ``Conflicts`` or ``Replaces`` globs, and the
two relations between units the rules ask about, ``MachineOf`` (who follows whom)
and ``Replaces`` (who displaces whom); and, for the templates whose instances set
``MaxPerMachine`` or ``SpreadBy`` (no other template is counted), how many of their
instances each machine and each ``SpreadBy`` value holds. The planner updates it as
it decides; it decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from fleet.core.matching import GlobSet, glob_set
from fleet.core.model import Machine
from fleet.core.names import template_of
from fleet.core.requirements import Requirements

__all__ = ["Occupancy", "Unit"]


class Unit(Protocol):
    """What a pass reads of a unit; :class:`fleet.core.scheduler.SchedUnit` is one.

    A protocol rather than SchedUnit itself, so that the scheduler can build on
    this module without an import cycle."""

    @property
    def name(self) -> str: ...

    @property
    def requirements(self) -> Requirements: ...


class Occupancy:
    """Units per machine for one pass over ``units`` and ``machines`` (sorted mappings:
    every iteration here follows their order), starting from the global units each
    machine admits (``globals_on``) and an empty schedule."""

    def __init__(
        self,
        units: Mapping[str, Unit],
        machines: Mapping[str, Machine],
        globals_on: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.units = units
        self.machines = machines
        self.peers: dict[str, tuple[str, ...]] = {}
        self.followers: dict[str, list[str]] = {}
        spreading: dict[str, dict[str, None]] = {}  # template -> its SpreadBy keys
        self.template_of: dict[str, str] = {}
        for name, unit in units.items():
            req = unit.requirements
            if req.max_per_machine is not None or req.spread_by is not None:
                # A unit that is no template instance was refused at submit: not counted.
                template = template_of(name)
                if template is not None:
                    self.template_of[name] = template
                    keys = spreading.setdefault(template, {})
                    if req.spread_by is not None:
                        keys[req.spread_by] = None
            machine_of = req.machine_of
            if not machine_of:
                self.peers[name] = ()
                continue
            # A unit that names itself in MachineOf is trivially with itself.
            peers = tuple(dict.fromkeys(p for p in machine_of if p != name))
            self.peers[name] = peers
            for p in peers:
                self.followers.setdefault(p, []).append(name)

        self.globals_on = globals_on
        self.global_sets = {mid: frozenset(gs) for mid, gs in globals_on.items()}
        self.global_machines: dict[str, list[str]] = {}
        # Scheduled units per machine (dicts keep a deterministic order), and the units
        # per machine that carry Conflicts or Replaces globs.
        self.schedule: dict[str, str] = {}
        self.on_machine: dict[str, dict[str, None]] = {m: {} for m in machines}
        self.holders: dict[str, dict[str, GlobSet]] = {m: {} for m in machines}
        self.replacers: dict[str, dict[str, None]] = {m: {} for m in machines}
        for mid, names in globals_on.items():
            for g in names:
                self.global_machines.setdefault(g, []).append(mid)
                globs = units[g].requirements.conflicts
                if globs:
                    self.holders[mid][g] = glob_set(globs)
        # Instances per machine and per SpreadBy value, of the counted templates only:
        # ``template_of`` holds just their instances, so other units cost one lookup.
        self.instances: dict[str, dict[str, int]] = {}  # machine -> template -> count
        self.spread_keys: dict[str, tuple[str, ...]] = {t: tuple(k) for t, k in spreading.items()}
        self.spread: dict[tuple[str, str], dict[str, int]] = {}
        if spreading:
            for name in units:
                if "@" in name and name not in self.template_of:
                    template = template_of(name)
                    if template in spreading:
                        self.template_of[name] = template
            for template, spread_keys in self.spread_keys.items():
                for key in spread_keys:
                    self.spread[(template, key)] = {}
        # Units placed in this pass: Replaces never displaces them again in it.
        self.placed: set[str] = set()
        self._replaces_memo: dict[tuple[str, str], bool] = {}

    def present(self, name: str, mid: str) -> bool:
        """Whether ``name`` runs on ``mid``: scheduled there, or a global unit it admits."""
        return self.schedule.get(name) == mid or name in self.global_sets[mid]

    def machines_running(self, name: str) -> set[str]:
        """The machines ``name`` runs on: its scheduled machine, or where it is global."""
        where = self.schedule.get(name)
        if where is not None:
            return {where}
        return set(self.global_machines.get(name, ()))

    def claim(self, name: str, mid: str) -> None:
        """Record ``name`` as scheduled on ``mid`` before its rules are checked there:
        MachineOf sees it, Conflicts and Replaces do not until :meth:`add`."""
        self.schedule[name] = mid

    def add(self, name: str, mid: str, *, placed: bool = False) -> None:
        """Put ``name`` on ``mid``; ``placed`` when the current pass placed it there."""
        self.schedule[name] = mid
        self.on_machine[mid][name] = None
        req = self.units[name].requirements
        if req.conflicts:
            self.holders[mid][name] = glob_set(req.conflicts)
        if req.replaces:
            self.replacers[mid][name] = None
        if name in self.template_of:  # not a call: units without B15 options stay cheap
            self._count(self.template_of[name], mid, +1)
        if placed:
            self.placed.add(name)

    def remove(self, name: str) -> tuple[str, bool]:
        """Take ``name`` off its machine; return that machine and whether ``name`` was on
        it (False for a unit only claimed)."""
        mid = self.schedule.pop(name)
        self.placed.discard(name)
        if name not in self.on_machine[mid]:
            return mid, False
        del self.on_machine[mid][name]
        self.holders[mid].pop(name, None)
        self.replacers[mid].pop(name, None)
        if name in self.template_of:
            self._count(self.template_of[name], mid, -1)
        return mid, True

    def instances_on(self, template: str, mid: str) -> int:
        """How many instances of ``template`` (a counted one) are on ``mid``."""
        counts = self.instances.get(mid)
        return 0 if counts is None else counts.get(template, 0)

    def spread_counts(self, template: str, key: str) -> Mapping[str, int]:
        """Instances of ``template`` (a counted one) on the machines with metadata ``key``,
        by its value (values with none may be missing)."""
        return self.spread[(template, key)]

    def _count(self, template: str, mid: str, delta: int) -> None:
        counts = self.instances.setdefault(mid, {})
        counts[template] = counts.get(template, 0) + delta
        metadata = self.machines[mid].metadata
        for key in self.spread_keys[template]:
            value = metadata.get(key)
            if value is not None:
                by_value = self.spread[(template, key)]
                by_value[value] = by_value.get(value, 0) + delta

    def replaces(self, a: str, b: str) -> bool:
        """Whether ``a`` displaces ``b``: a circular Replaces pair is ignored for both."""
        key = (a, b)
        memo = self._replaces_memo.get(key)
        if memo is None:
            ra = self.units[a].requirements.replaces
            rb = self.units[b].requirements.replaces if b in self.units else ()
            memo = glob_set(ra).matches(b) and not glob_set(rb).matches(a)
            self._replaces_memo[key] = memo
        return memo
