"""Each [X-Fleet] rule on its own: one table of cases per checker, run against a real
Occupancy, and the Global admission rule. How the checkers stack: test_check_stacks.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest

from fleet.core.checks import (
    Checker,
    admit_globals,
    check_conflicts,
    check_machine_id,
    check_machine_metadata,
    check_machine_of,
    check_max_per_machine,
    check_replaces,
    check_spread_by,
    globals_by_machine,
)
from fleet.core.model import DesiredState, Machine
from fleet.core.occupancy import Occupancy
from fleet.core.reasons import Rule
from fleet.core.requirements import MetadataConstraint, MetadataOp, Requirements
from fleet.core.scheduler import SchedUnit

M0 = "0a" * 16
M1 = "1b" * 16
AZ_A = {"az": "a", "disk": "ssd"}


def unit(name: str, **req: object) -> SchedUnit:
    return SchedUnit(name, "0" * 40, DesiredState.LAUNCHED, Requirements(**req))  # type: ignore[arg-type]


def md(key: str, op: str, value: str) -> MetadataConstraint:
    return MetadataConstraint(key, MetadataOp(op), value)


@dataclass(frozen=True)
class Case:
    """``subject`` judged on M0 (metadata ``AZ_A``; M1 has none) while ``others`` run where
    ``on`` says (a unit in ``others`` but not in ``on`` exists, unscheduled)."""

    id: str
    subject: SchedUnit
    expected: tuple[Rule, str] | None
    others: tuple[SchedUnit, ...] = ()
    on: Mapping[str, str] = field(default_factory=dict)
    placed: frozenset[str] = frozenset()  # units of ``on`` placed in the current pass
    claimed: Mapping[str, str] = field(default_factory=dict)  # scheduled, not yet admitted


def occupancy(
    units: Iterable[SchedUnit],
    on: Mapping[str, str] | None = None,
    *,
    placed: frozenset[str] = frozenset(),
    claimed: Mapping[str, str] | None = None,
) -> Occupancy:
    """A real Occupancy over M0 and M1 holding ``on`` (and ``claimed``), as a pass builds it."""
    by_name = {u.name: u for u in sorted(units, key=lambda u: u.name)}
    ms = {M0: Machine(M0, metadata=AZ_A), M1: Machine(M1)}
    globals_ = [u for u in by_name.values() if u.is_global]
    occ = Occupancy(by_name, ms, globals_by_machine(ms, globals_))
    for name, mid in (on or {}).items():
        occ.add(name, mid, placed=name in placed)
    for name, mid in (claimed or {}).items():
        occ.claim(name, mid)
    return occ


def judge(check: Checker, case: Case) -> tuple[Rule, str] | None:
    occ = occupancy((case.subject, *case.others), case.on, placed=case.placed, claimed=case.claimed)
    rejection = check(occ, case.subject, M0)
    if rejection is None:
        return None
    assert rejection.machine_id == M0
    return rejection.rule, rejection.detail


def table(*cases: Case) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


# -- MachineID --------------------------------------------------------------------------------

MACHINE_ID = (
    Case("unset", unit("a.service"), None),
    Case("full-id-of-this-machine", unit("a.service", machine_id=M0), None),
    Case("short-id-of-this-machine", unit("a.service", machine_id=M0[:8]), None),
    Case(
        "full-id-of-another",
        unit("a.service", machine_id=M1),
        (Rule.MACHINE_ID, f"MachineID={M1} names another machine"),
    ),
    Case(
        "short-id-of-another",
        unit("a.service", machine_id=M1[:8]),
        (Rule.MACHINE_ID, "MachineID=1b1b1b1b names another machine"),
    ),
    Case(
        "prefix-not-8-chars",
        unit("a.service", machine_id=M0[:7]),
        (Rule.MACHINE_ID, "MachineID=0a0a0a0 names another machine"),
    ),
)


@table(*MACHINE_ID)
def test_machine_id(case: Case) -> None:
    assert judge(check_machine_id, case) == case.expected


# -- MachineMetadata --------------------------------------------------------------------------

MACHINE_METADATA = (
    Case("unset", unit("a.service"), None),
    Case("equal", unit("a.service", metadata=(md("az", "=", "a"),)), None),
    Case(
        "one-of-an-or-group",
        unit("a.service", metadata=(md("az", "=", "b"), md("az", "=", "a"))),
        None,
    ),
    Case("not-equal-holds", unit("a.service", metadata=(md("disk", "!=", "hdd"),)), None),
    Case(
        "other-value",
        unit("a.service", metadata=(md("az", "=", "b"), md("az", "=", "c"))),
        (Rule.MACHINE_METADATA, "az=b or c (machine has az=a)"),
    ),
    Case(
        "missing-key",
        unit("a.service", metadata=(md("mem", ">=", "16"),)),
        (Rule.MACHINE_METADATA, "mem>=16 (machine has no mem)"),
    ),
    Case(
        "every-unmet-term-named",
        unit("a.service", metadata=(md("az", "=", "b"), md("disk", "!=", "ssd"))),
        (Rule.MACHINE_METADATA, "az=b (machine has az=a) and disk!=ssd (machine has disk=ssd)"),
    ),
)


@table(*MACHINE_METADATA)
def test_machine_metadata(case: Case) -> None:
    assert judge(check_machine_metadata, case) == case.expected


# -- MachineOf --------------------------------------------------------------------------------

GLOBAL_HERE = unit("g.service", is_global=True, metadata=(md("az", "=", "a"),))
GLOBAL_ELSEWHERE = unit("g.service", is_global=True, metadata=(md("az", "=", "b"),))
B = unit("b.service")

MACHINE_OF = (
    Case("unset", unit("a.service"), None),
    Case("follows-itself", unit("a.service", machine_of=("a.service",)), None),
    Case(
        "target-here",
        unit("a.service", machine_of=("b.service",)),
        None,
        others=(B,),
        on={"b.service": M0},
    ),
    Case(
        "target-claimed-here",  # step 1 checks MachineOf before admitting anyone
        unit("a.service", machine_of=("b.service",)),
        None,
        others=(B,),
        claimed={"b.service": M0},
    ),
    Case(
        "global-target-admitted-here",
        unit("a.service", machine_of=("g.service",)),
        None,
        others=(GLOBAL_HERE,),
    ),
    Case(
        "target-missing",
        unit("a.service", machine_of=("b.service",)),
        (Rule.MACHINE_OF, "follows b.service, which does not exist"),
    ),
    Case(
        "target-unscheduled",
        unit("a.service", machine_of=("b.service",)),
        (Rule.MACHINE_OF, "follows b.service, which is not scheduled"),
        others=(B,),
    ),
    Case(
        "target-elsewhere",
        unit("a.service", machine_of=("b.service",)),
        (Rule.MACHINE_OF, "follows b.service, which is on 1b1b1b1b"),
        others=(B,),
        on={"b.service": M1},
    ),
    Case(
        "global-target-not-admitted-here",
        unit("a.service", machine_of=("g.service",)),
        (Rule.MACHINE_OF, "follows global unit g.service, which does not run there"),
        others=(GLOBAL_ELSEWHERE,),
    ),
    Case(
        "first-absent-target-named",
        unit("a.service", machine_of=("b.service", "c.service", "d.service")),
        (Rule.MACHINE_OF, "follows c.service, which is on 1b1b1b1b"),
        others=(B, unit("c.service")),
        on={"b.service": M0, "c.service": M1},
    ),
)


@table(*MACHINE_OF)
def test_machine_of(case: Case) -> None:
    assert judge(check_machine_of, case) == case.expected


# -- Conflicts --------------------------------------------------------------------------------

CONFLICTS = (
    Case("unset", unit("a.service"), None, others=(B,), on={"b.service": M0}),
    Case(
        "its-glob-matches-a-unit-here",
        unit("a.service", conflicts=("x.service", "b.*")),
        (Rule.CONFLICTS, "b.service runs there and matches Conflicts=b.*"),
        others=(B,),
        on={"b.service": M0},
    ),
    Case(
        "its-glob-matches-a-global-unit-here",
        unit("a.service", conflicts=("g.service",)),
        (Rule.CONFLICTS, "g.service runs there and matches Conflicts=g.service"),
        others=(GLOBAL_HERE,),
    ),
    Case(
        "a-unit-here-has-a-matching-glob",
        unit("a.service"),
        (Rule.CONFLICTS, "b.service runs there and has Conflicts=a.*"),
        others=(unit("b.service", conflicts=("a.*",)),),
        on={"b.service": M0},
    ),
    Case(
        "a-global-unit-here-has-a-matching-glob",
        unit("a.service"),
        (Rule.CONFLICTS, "g.service runs there and has Conflicts=a.service"),
        others=(unit("g.service", is_global=True, conflicts=("a.service",)),),
    ),
    Case(
        "match-runs-elsewhere",
        unit("a.service", conflicts=("b.*",)),
        None,
        others=(B,),
        on={"b.service": M1},
    ),
    Case(
        "match-only-claimed",  # admitted later in name order, so it is the one to move
        unit("a.service", conflicts=("b.*",)),
        None,
        others=(B,),
        claimed={"b.service": M0},
    ),
    Case(
        "glob-matches-itself",
        unit("a.service", conflicts=("a.*",)),
        None,
        on={"a.service": M0},
    ),
)


@table(*CONFLICTS)
def test_conflicts(case: Case) -> None:
    assert judge(check_conflicts, case) == case.expected


# -- SpreadBy ---------------------------------------------------------------------------------

SPREAD_BY = (
    Case("unset", unit("w@1.service"), None),
    Case("machine-has-the-key", unit("w@1.service", spread_by="az"), None),
    Case(
        "machine-lacks-the-key",
        unit("w@1.service", spread_by="rack"),
        (Rule.SPREAD_BY, "has no metadata rack (SpreadBy=rack)"),
    ),
    Case(
        "instances-here-do-not-matter",  # evenness is the planner's choice, not a rule
        unit("w@1.service", spread_by="az"),
        None,
        others=(unit("w@2.service", spread_by="az"), unit("w@3.service")),
        on={"w@2.service": M0, "w@3.service": M0},
    ),
)


@table(*SPREAD_BY)
def test_spread_by(case: Case) -> None:
    assert judge(check_spread_by, case) == case.expected


# -- MaxPerMachine ----------------------------------------------------------------------------

W2, W3 = unit("w@2.service"), unit("w@3.service")

MAX_PER_MACHINE = (
    Case("unset", unit("w@1.service"), None, others=(W2,), on={"w@2.service": M0}),
    Case(
        "room-left",
        unit("w@1.service", max_per_machine=2),
        None,
        others=(W2,),
        on={"w@2.service": M0},
    ),
    Case(
        "full",
        unit("w@1.service", max_per_machine=1),
        (Rule.MAX_PER_MACHINE, "holds 1 instance of w@.service already (MaxPerMachine=1)"),
        others=(W2,),
        on={"w@2.service": M0},
    ),
    Case(
        "every-instance-counts-whatever-its-options",
        unit("w@1.service", max_per_machine=2),
        (Rule.MAX_PER_MACHINE, "holds 2 instances of w@.service already (MaxPerMachine=2)"),
        others=(W2, unit("w@3.service", max_per_machine=5)),
        on={"w@2.service": M0, "w@3.service": M0},
    ),
    Case(
        "instances-elsewhere-do-not-count",
        unit("w@1.service", max_per_machine=1),
        None,
        others=(W2, W3),
        on={"w@2.service": M1, "w@3.service": M1},
    ),
    Case(
        "other-templates-do-not-count",
        unit("w@1.service", max_per_machine=1),
        None,
        others=(unit("v@1.service"), unit("w.service"), unit("w@1.socket")),
        on={"v@1.service": M0, "w.service": M0, "w@1.socket": M0},
    ),
    Case(
        "only-claimed-instances-do-not-count",  # admitted later in name order: they move
        unit("w@1.service", max_per_machine=1),
        None,
        others=(W2,),
        claimed={"w@2.service": M0},
    ),
    Case(
        "it-does-not-count-itself",
        unit("w@1.service", max_per_machine=2),
        None,
        others=(W2,),
        on={"w@1.service": M0, "w@2.service": M0},
    ),
    Case(
        "a-limit-of-another-instance-does-not-apply",
        unit("w@1.service"),
        None,
        others=(unit("w@2.service", max_per_machine=1),),
        on={"w@2.service": M0},
    ),
)


@table(*MAX_PER_MACHINE)
def test_max_per_machine(case: Case) -> None:
    assert judge(check_max_per_machine, case) == case.expected


# -- Replaces ---------------------------------------------------------------------------------

REPLACES = (
    Case("unset", unit("a.service"), None, others=(B,), on={"b.service": M0}),
    Case(
        "a-unit-here-replaces-it",
        unit("a.service"),
        (Rule.REPLACES, "b.service runs there and replaces it"),
        others=(unit("b.service", replaces=("a.*",)),),
        on={"b.service": M0},
    ),
    Case(
        "circular-pair-ignored",
        unit("a.service", replaces=("b.service",)),
        None,
        others=(unit("b.service", replaces=("a.service",)),),
        on={"b.service": M0},
    ),
    Case(
        "it-may-displace-a-unit-scheduled-before",
        unit("a.service", replaces=("b.service",)),
        None,
        others=(B,),
        on={"b.service": M0},
    ),
    Case(
        "it-would-displace-a-unit-it-follows",
        unit("a.service", replaces=("b.service",), machine_of=("b.service",)),
        (Rule.REPLACES, "it would displace b.service, which it follows (MachineOf)"),
        others=(B,),
        on={"b.service": M0},
    ),
    Case(
        "it-would-displace-a-unit-placed-this-pass",
        unit("a.service", replaces=("b.*",)),
        (Rule.REPLACES, "it would displace b.service, placed there in this same pass"),
        others=(B,),
        on={"b.service": M0},
        placed=frozenset({"b.service"}),
    ),
)


@table(*REPLACES)
def test_replaces(case: Case) -> None:
    assert judge(check_replaces, case) == case.expected


# -- Global -----------------------------------------------------------------------------------


def global_unit(name: str, **req: object) -> SchedUnit:
    return unit(name, is_global=True, **req)


@pytest.mark.parametrize(
    ("globals_", "metadata", "expected"),
    [
        ([global_unit("g.service")], {}, ["g.service"]),
        ([global_unit("g.service", metadata=(md("az", "=", "a"),))], AZ_A, ["g.service"]),
        ([global_unit("g.service", metadata=(md("az", "=", "b"),))], AZ_A, []),
        (
            [global_unit("a.service", conflicts=("b.*",)), global_unit("b.service")],
            {},
            ["a.service"],
        ),
        (
            [global_unit("a.service"), global_unit("b.service", conflicts=("a.*",))],
            {},
            ["a.service"],
        ),
        (
            [
                global_unit("a.service", conflicts=("c.*",)),
                global_unit("b.service"),
                global_unit("c.service"),
            ],
            {},
            ["a.service", "b.service"],
        ),
    ],
    ids=[
        "no-options",
        "metadata-holds",
        "metadata-fails",
        "earlier-conflicts-with-later",
        "later-conflicts-with-earlier",
        "only-the-conflicting-one-left-out",
    ],
)
def test_admit_globals(
    globals_: list[SchedUnit], metadata: dict[str, str], expected: list[str]
) -> None:
    assert admit_globals(metadata, globals_) == expected


def test_globals_by_machine_admits_per_machine() -> None:
    g = unit("g.service", is_global=True, metadata=(md("az", "=", "a"),))
    m2 = "2c" * 16
    ms = {M0: Machine(M0, metadata=AZ_A), M1: Machine(M1), m2: Machine(m2, metadata=AZ_A)}
    assert globals_by_machine(ms, [g]) == {M0: ("g.service",), M1: (), m2: ("g.service",)}
