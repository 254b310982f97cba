"""The ``[X-Fleet]`` rules, one checker each, stacked in the order fleet checks them.

A checker judges one unit on one machine, as the pass's
:class:`~fleet.core.occupancy.Occupancy` sees it, and returns the
:class:`~fleet.core.explain.Rejection` saying why the machine cannot take the
unit, or None when its rule lets it through. The detail of a rejection is a
sentence a user can act on. The planner runs a stack (:data:`KEEPING` for a unit
already in place, :data:`PLACING` for one being placed, each pruned per unit by
:class:`Stacks`) and stops at the first rejection, like Nomad's
``scheduler/feasible.go``. Global units are not placed but admitted by each
machine; :func:`admit_globals` is that rule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from fleet.core.explain import Rejection, plural, short_id
from fleet.core.matching import glob_set, metadata_matches, unmet_metadata
from fleet.core.model import Machine
from fleet.core.occupancy import Occupancy, Unit
from fleet.core.reasons import Rule

__all__ = [
    "KEEPING",
    "PLACING",
    "Checker",
    "Stacks",
    "admit_globals",
    "check_conflicts",
    "check_cordon",
    "check_machine_id",
    "check_machine_metadata",
    "check_machine_of",
    "check_max_per_machine",
    "check_replaces",
    "check_spread_by",
    "first_rejection",
    "globals_by_machine",
    "units_conflict",
]

Checker = Callable[[Occupancy, Unit, str], Rejection | None]
"""``checker(occupancy, unit, machine_id)``: the rejection, or None when the rule holds."""


def check_cordon(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """A cordoned machine takes no new unit (units already there stay: not in KEEPING)."""
    reason = occ.machines[mid].cordon
    if reason is None:
        return None
    return Rejection(
        mid,
        Rule.CORDON,
        f"the machine is cordoned ({reason})" if reason else "the machine is cordoned",
    )


def check_machine_id(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """MachineID: the machine's id is the value, in full or as its short form."""
    wanted = unit.requirements.machine_id
    if wanted is None or occ.machines[mid].matches_id(wanted):
        return None
    return Rejection(mid, Rule.MACHINE_ID, f"MachineID={wanted} names another machine")


def check_machine_metadata(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """MachineMetadata: the machine's metadata satisfies every term."""
    wanted = unit.requirements.metadata
    if not wanted:
        return None
    metadata = occ.machines[mid].metadata
    if metadata_matches(wanted, metadata):
        return None
    return Rejection(mid, Rule.MACHINE_METADATA, " and ".join(unmet_metadata(wanted, metadata)))


def check_machine_of(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """MachineOf: every unit it follows runs on the machine."""
    for peer in occ.peers[unit.name]:
        if not occ.present(peer, mid):
            return Rejection(mid, Rule.MACHINE_OF, _absent_peer(occ, peer))
    return None


def _absent_peer(occ: Occupancy, peer: str) -> str:
    unit = occ.units.get(peer)
    if unit is None:
        return f"follows {peer}, which does not exist"
    if unit.requirements.is_global:
        return f"follows global unit {peer}, which does not run there"
    where = occ.schedule.get(peer)
    if where is None:
        return f"follows {peer}, which is not scheduled"
    return f"follows {peer}, which is on {short_id(where)}"


def check_conflicts(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """Conflicts, both ways: no unit on the machine (global ones included) matches the
    unit's globs, and no unit there has a glob matching the unit's name."""
    name = unit.name
    globs = unit.requirements.conflicts
    if globs:
        mine = glob_set(globs)
        for other in (*occ.on_machine[mid], *occ.globals_on[mid]):
            if other != name and mine.matches(other):
                detail = f"{other} runs there and matches Conflicts={mine.first(other)}"
                return Rejection(mid, Rule.CONFLICTS, detail)
    for holder, theirs in occ.holders[mid].items():
        if holder != name and theirs.matches(name):
            detail = f"{holder} runs there and has Conflicts={theirs.first(name)}"
            return Rejection(mid, Rule.CONFLICTS, detail)
    return None


def check_spread_by(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """SpreadBy: the machine has the metadata key the instances spread over. (Which
    value gets the next instance is the planner's choice, not a rule.)"""
    key = unit.requirements.spread_by
    if key is None or key in occ.machines[mid].metadata:
        return None
    return Rejection(mid, Rule.SPREAD_BY, f"has no metadata {key} (SpreadBy={key})")


def check_max_per_machine(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """MaxPerMachine: fewer than N other instances of the unit's template are on the
    machine (every instance counts, whatever its own options)."""
    limit = unit.requirements.max_per_machine
    if limit is None:
        return None
    name = unit.name
    template = occ.template_of.get(name)
    if template is None:
        return None
    held = occ.instances_on(template, mid) - (1 if name in occ.on_machine[mid] else 0)
    if held < limit:
        return None
    detail = (
        f"holds {held} {plural(held, 'instance')} of {template} already (MaxPerMachine={limit})"
    )
    return Rejection(mid, Rule.MAX_PER_MACHINE, detail)


def check_replaces(occ: Occupancy, unit: Unit, mid: str) -> Rejection | None:
    """Replaces, when placing: no unit on the machine replaces this one, and this one
    would not displace a unit it follows or one placed earlier in the same pass."""
    name = unit.name
    for other in occ.replacers[mid]:
        if other != name and occ.replaces(other, name):
            return Rejection(mid, Rule.REPLACES, f"{other} runs there and replaces it")
    if unit.requirements.replaces:
        for other in occ.on_machine[mid]:
            if other == name or not occ.replaces(name, other):
                continue
            if other in occ.peers[name]:
                detail = f"it would displace {other}, which it follows (MachineOf)"
                return Rejection(mid, Rule.REPLACES, detail)
            if other in occ.placed:
                detail = f"it would displace {other}, placed there in this same pass"
                return Rejection(mid, Rule.REPLACES, detail)
    return None


# fleet's order, the order of Rule's members: a rejection names the first rule that fails.
PLACING: tuple[Checker, ...] = (
    check_machine_id,
    check_machine_metadata,
    check_machine_of,
    check_conflicts,
    check_spread_by,
    check_max_per_machine,
    check_replaces,
)
# A unit already in place is not judged by Replaces: the planner moves the replaced
# unit away instead.
KEEPING: tuple[Checker, ...] = PLACING[:-1]
# A cordon only stops new placements, so it is never in KEEPING; it heads the
# placing stack of every unit when some machine of the pass is cordoned.
CORDONED: tuple[Checker, ...] = (check_cordon,)


class Stacks:
    """The checkers worth running on each unit of one pass over ``units``.

    A checker that cannot reject a unit is left out of the unit's stack, so checking
    a unit with no ``[X-Fleet]`` options costs next to nothing. MachineID,
    MachineMetadata, MachineOf, SpreadBy and MaxPerMachine can only reject a unit
    that sets them; Conflicts and Replaces are mutual (another unit's globs can match
    this one), so they stay in every stack once some unit of the pass sets them."""

    def __init__(self, units: Collection[Unit], cordoned: bool = False) -> None:
        self._head = CORDONED if cordoned else ()
        mutual: set[Checker] = set()
        if any(u.requirements.conflicts for u in units):
            mutual.add(check_conflicts)
        if any(u.requirements.replaces for u in units):
            mutual.add(check_replaces)
        self._mutual = frozenset(mutual)
        self._memo: dict[tuple[bool, ...], tuple[tuple[Checker, ...], tuple[Checker, ...]]] = {}

    def keeping(self, unit: Unit) -> tuple[Checker, ...]:
        """The part of :data:`KEEPING` that can reject ``unit``."""
        return self._stacks(unit)[0]

    def placing(self, unit: Unit) -> tuple[Checker, ...]:
        """The part of :data:`PLACING` that can reject ``unit``."""
        return self._stacks(unit)[1]

    def _stacks(self, unit: Unit) -> tuple[tuple[Checker, ...], tuple[Checker, ...]]:
        req = unit.requirements
        # Which of PLACING's options the unit leaves unset, in PLACING's order.
        unset = (
            req.machine_id is None,
            not req.metadata,
            not req.machine_of,
            not req.conflicts,
            req.spread_by is None,
            req.max_per_machine is None,
            not req.replaces,
        )
        stacks = self._memo.get(unset)
        if stacks is None:
            placing = tuple(
                check
                for check, off in zip(PLACING, unset, strict=True)
                if not off or check in self._mutual
            )
            keeping = tuple(check for check in placing if check in KEEPING)
            stacks = self._memo[unset] = (keeping, self._head + placing)
        return stacks


def first_rejection(
    checks: Sequence[Checker], occ: Occupancy, unit: Unit, mid: str
) -> Rejection | None:
    """The rejection of the first checker in ``checks`` that rules ``mid`` out, or None."""
    for check in checks:
        rejection = check(occ, unit, mid)
        if rejection is not None:
            return rejection
    return None


def admit_globals(metadata: Mapping[str, str], globals_: Sequence[Unit]) -> list[str]:
    """Global: the global units a machine with ``metadata`` runs, from ``globals_`` in
    their order: those whose MachineMetadata holds and that conflict with no global unit
    admitted before them."""
    accepted: list[Unit] = []
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


def globals_by_machine(
    machines: Mapping[str, Machine], globals_: Sequence[Unit]
) -> dict[str, tuple[str, ...]]:
    """:func:`admit_globals` for every machine, computed once per distinct metadata."""
    # Identical metadata admits identical global units (Nomad's "computed class").
    by_class: dict[frozenset[tuple[str, str]], tuple[str, ...]] = {}
    out: dict[str, tuple[str, ...]] = {}
    for mid, machine in machines.items():
        cls = frozenset(machine.metadata.items())
        admitted = by_class.get(cls)
        if admitted is None:
            admitted = by_class[cls] = tuple(admit_globals(machine.metadata, globals_))
        out[mid] = admitted
    return out


def units_conflict(a: str, a_globs: tuple[str, ...], b: str, b_globs: tuple[str, ...]) -> bool:
    """fleet's symmetric Conflicts: either unit's globs match the other's name."""
    return a != b and (glob_set(a_globs).matches(b) or glob_set(b_globs).matches(a))


_conflicts = units_conflict
