"""Safety properties of ``plan`` over random clusters ("something bad never happens"),
the fixed point of a reconciled schedule and independence from mapping order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.matching import glob_match, metadata_matches
from fleet.core.model import DesiredState, Machine
from fleet.core.requirements import MetadataConstraint, MetadataOp, Requirements
from fleet.core.scheduler import SchedUnit, Snapshot, global_units_for, plan

MACHINE_IDS = [f"{i:x}" * 32 for i in range(1, 7)]
NAMES = [f"u{i}.service" for i in range(10)]
GLOBS = [*NAMES, "u*.service", "u[0-4].service", "u[^0-4].service", "u?.service"]
KEYS = ["az", "disk", "mem"]
VALUES = ["a", "b", "1", "8", "16"]

metadata = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
constraint = st.builds(
    MetadataConstraint,
    st.sampled_from(KEYS),
    st.sampled_from(list(MetadataOp)),
    st.sampled_from(VALUES),
)


@st.composite
def snapshots(draw: st.DrawFn, *, with_replaces: bool = False) -> Snapshot:
    ids = draw(st.lists(st.sampled_from(MACHINE_IDS), unique=True, max_size=5))
    machines = {m: Machine(m, metadata=draw(metadata)) for m in ids}
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1, max_size=10))
    units = {}
    for name in names:
        is_global = draw(st.booleans()) and draw(st.booleans())  # ~25%
        machine_id = None
        if not is_global and ids and draw(st.integers(0, 5)) == 0:
            m = draw(st.sampled_from(ids))
            machine_id = draw(st.sampled_from([m, m[:8]]))
        requirements = Requirements(
            machine_id=machine_id,
            machine_of=()
            if is_global
            else tuple(draw(st.lists(st.sampled_from(names), max_size=2))),
            metadata=tuple(draw(st.lists(constraint, max_size=3))),
            conflicts=tuple(draw(st.lists(st.sampled_from(GLOBS), max_size=2))),
            replaces=tuple(draw(st.lists(st.sampled_from(GLOBS), max_size=2)))
            if with_replaces
            else (),
            is_global=is_global,
        )
        desired = draw(st.sampled_from(list(DesiredState)))
        units[name] = SchedUnit(name, "0" * 40, desired, requirements)
    schedule = draw(
        st.dictionaries(
            st.sampled_from(names), st.sampled_from([*ids, "gone" * 8]), max_size=len(names)
        )
    )
    return Snapshot(units, machines, schedule)


def conflicting(a: SchedUnit, b: SchedUnit) -> bool:
    return any(glob_match(g, b.name) for g in a.requirements.conflicts) or any(
        glob_match(g, a.name) for g in b.requirements.conflicts
    )


def replaces(a: SchedUnit, b: SchedUnit) -> bool:
    ab = any(glob_match(g, b.name) for g in a.requirements.replaces)
    ba = any(glob_match(g, a.name) for g in b.requirements.replaces)
    return ab and not ba


def running(s: Snapshot, schedule: dict[str, str]) -> dict[str, list[SchedUnit]]:
    """Every machine's units: the scheduled ones plus the global units it admits."""
    out: dict[str, list[SchedUnit]] = {}
    for m, machine in s.machines.items():
        out[m] = [s.units[n] for n in global_units_for(machine, s.units.values())]
        out[m] += [s.units[n] for n, where in schedule.items() if where == m]
    return out


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_result_honours_every_rule(s: Snapshot) -> None:
    p = plan(s)
    result = p.result(s)
    for name, m in result.items():
        u = s.units[name]
        assert m in s.machines
        assert u.desired is not DesiredState.INACTIVE
        assert not u.is_global
        assert metadata_matches(u.requirements.metadata, s.machines[m].metadata)
        if u.requirements.machine_id is not None:
            assert s.machines[m].matches_id(u.requirements.machine_id)
    for m, units in running(s, result).items():
        names = {u.name for u in units}
        for i, a in enumerate(units):
            # never two conflicting units on one machine (fleet #707)
            assert not any(conflicting(a, b) for b in units[i + 1 :]), (m, a.name)
            if not a.is_global:
                # MachineOf followers always share their targets' machine
                assert all(p == a.name or p in names for p in a.requirements.machine_of)
    # every active non-global unit is either placed or explained, with one rejection per machine
    for name, u in s.units.items():
        if u.desired is not DesiredState.INACTIVE and not u.is_global:
            assert (name in result) != (name in p.unplaceable)
    for rejections in p.unplaceable.values():
        assert [r.machine_id for r in rejections] == sorted(s.machines)


@settings(max_examples=300, deadline=None)
@given(snapshots(with_replaces=True))
def test_reconciled_schedule_is_a_fixed_point(s: Snapshot) -> None:
    p = plan(s)
    s2 = Snapshot(s.units, s.machines, p.result(s))
    p2 = plan(s2)
    assert p2.unschedule == ()
    assert p2.place == ()
    assert p2.unplaceable.keys() == p.unplaceable.keys()


@settings(max_examples=100, deadline=None)
@given(snapshots(with_replaces=True), st.randoms(use_true_random=False))
def test_placement_ignores_mapping_order(s: Snapshot, rnd: random.Random) -> None:
    units = list(s.units.items())
    machines = list(s.machines.items())
    schedule = list(s.schedule.items())
    for seq in (units, machines, schedule):
        rnd.shuffle(seq)
    shuffled = Snapshot(dict(units), dict(machines), dict(schedule))
    assert plan(shuffled) == plan(s)


@settings(max_examples=200, deadline=None)
@given(snapshots(with_replaces=True))
def test_replaces_never_leaves_a_unit_beside_its_replacer(s: Snapshot) -> None:
    p = plan(s)
    result = p.result(s)
    for m, units in running(s, result).items():
        scheduled = [u for u in units if not u.is_global]
        for a in scheduled:
            for b in scheduled:
                assert a is b or not replaces(a, b), (m, a.name, b.name)
    # each unit is unscheduled and placed at most once per plan
    assert len({u.name for u in p.unschedule}) == len(p.unschedule)
    assert len({x.name for x in p.place}) == len(p.place)
