"""How the checkers stack: fleet's order, the first rejection wins, and the per-unit
stacks that leave out checkers which cannot reject (never changing a verdict)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings

from fleet.core.checks import (
    KEEPING,
    PLACING,
    Checker,
    Stacks,
    check_conflicts,
    check_machine_id,
    check_machine_metadata,
    check_machine_of,
    check_max_per_machine,
    check_replaces,
    check_spread_by,
    first_rejection,
    globals_by_machine,
)
from fleet.core.occupancy import Occupancy
from fleet.core.reasons import Rule
from fleet.core.scheduler import SchedUnit, Snapshot
from tests.core.test_checks import (
    CONFLICTS,
    M0,
    M1,
    MACHINE_ID,
    MACHINE_METADATA,
    MACHINE_OF,
    MAX_PER_MACHINE,
    REPLACES,
    SPREAD_BY,
    Case,
    md,
    occupancy,
    unit,
)
from tests.core.test_scheduler_properties import snapshots
from tests.core.test_spread_properties import snapshots as spread_snapshots

TABLES: tuple[tuple[Checker, tuple[Case, ...]], ...] = (
    (check_machine_id, MACHINE_ID),
    (check_machine_metadata, MACHINE_METADATA),
    (check_machine_of, MACHINE_OF),
    (check_conflicts, CONFLICTS),
    (check_spread_by, SPREAD_BY),
    (check_max_per_machine, MAX_PER_MACHINE),
    (check_replaces, REPLACES),
)


def test_every_checker_is_stacked_in_rule_order() -> None:
    """The stack is fleet's order, which Rule's member order (and so explain) follows."""
    rules = {check: {c.expected[0] for c in cases if c.expected} for check, cases in TABLES}
    assert [check for check, _ in TABLES] == list(PLACING)
    # The cordon heads every placing stack when a machine is cordoned (tests/core/test_cordon.py).
    assert [{Rule.CORDON}] + [rules[check] for check in PLACING] == [{rule} for rule in Rule]
    assert tuple(c for c in PLACING if c is not check_replaces) == KEEPING


def test_first_rejection_stops_at_the_first_failing_rule() -> None:
    u = unit("a.service", machine_id=M1, metadata=(md("az", "=", "b"),))
    occ = occupancy([u])
    rules = [first_rejection(PLACING[i:], occ, u, M0) for i in range(3)]
    assert [r.rule if r else None for r in rules] == [
        Rule.MACHINE_ID,
        Rule.MACHINE_METADATA,
        None,
    ]
    assert first_rejection((), occ, u, M0) is None


def names(stack: Iterable[Checker]) -> list[str]:
    return [check.__name__.removeprefix("check_") for check in stack]


@pytest.mark.parametrize(
    ("subject", "others", "keeping", "placing"),
    [
        (unit("a.service"), [], [], []),
        (unit("a.service", machine_id=M0), [], ["machine_id"], ["machine_id"]),
        (unit("a.service", metadata=(md("az", "=", "a"),)), [], ["machine_metadata"], None),
        (unit("a.service", machine_of=("b.service",)), [], ["machine_of"], None),
        (unit("a.service", conflicts=("b.*",)), [], ["conflicts"], None),
        (unit("a.service", replaces=("b.*",)), [], [], ["replaces"]),
        (unit("w@1.service", spread_by="az"), [], ["spread_by"], None),
        (unit("w@1.service", max_per_machine=1), [], ["max_per_machine"], None),
        (unit("w@1.service"), [unit("w@2.service", max_per_machine=1, spread_by="az")], [], []),
        (unit("a.service"), [unit("b.service", conflicts=("x",))], ["conflicts"], None),
        (unit("a.service"), [unit("b.service", replaces=("x",))], [], ["replaces"]),
        (
            unit("a.service", machine_id=M0, machine_of=("b.service",)),
            [unit("b.service", conflicts=("x",), replaces=("y",))],
            ["machine_id", "machine_of", "conflicts"],
            ["machine_id", "machine_of", "conflicts", "replaces"],
        ),
    ],
    ids=[
        "no-options-anywhere",
        "machine-id",
        "metadata",
        "machine-of",
        "own-conflicts",
        "own-replaces",
        "spread-by",
        "max-per-machine",
        "another-instance-has-both",
        "another-unit-has-conflicts",
        "another-unit-has-replaces",
        "several",
    ],
)
def test_stacks_leave_out_checkers_that_cannot_reject(
    subject: SchedUnit,
    others: list[SchedUnit],
    keeping: list[str],
    placing: list[str] | None,
) -> None:
    stacks = Stacks([subject, *others])
    assert names(stacks.keeping(subject)) == keeping
    assert names(stacks.placing(subject)) == (keeping if placing is None else placing)


@settings(max_examples=300, deadline=None)
@given(snapshots(with_replaces=True) | spread_snapshots())
def test_pruned_stacks_reject_exactly_as_the_full_ones(s: Snapshot) -> None:
    """Leaving checkers out never changes a verdict, whatever the occupancy."""
    units = dict(sorted(s.units.items()))
    ms = dict(sorted(s.machines.items()))
    occ = Occupancy(units, ms, globals_by_machine(ms, [u for u in units.values() if u.is_global]))
    for i, (name, mid) in enumerate(sorted(s.schedule.items())):
        if name in units and mid in ms and not units[name].is_global:
            occ.add(name, mid, placed=i % 2 == 0)
    stacks = Stacks(list(units.values()))
    for u in units.values():
        for mid in ms:
            assert first_rejection(stacks.keeping(u), occ, u, mid) == first_rejection(
                KEEPING, occ, u, mid
            )
            assert first_rejection(stacks.placing(u), occ, u, mid) == first_rejection(
                PLACING, occ, u, mid
            )
