"""The agent's pure reconciler: fleet's task table, its order, and the fixed point."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.agent_plan import (
    ActionKind,
    AgentAction,
    AgentReason,
    CurrentUnit,
    DesiredUnit,
    apply_plan,
    desired_units,
    plan_agent,
)
from fleet.core.model import DesiredState, Job, Machine
from fleet.core.requirements import MetadataConstraint, MetadataOp, Requirements

LOADED = DesiredState.LOADED
LAUNCHED = DesiredState.LAUNCHED
INACTIVE = DesiredState.INACTIVE
K = ActionKind
R = AgentReason


def act(kind: ActionKind, unit: str, reason: AgentReason) -> AgentAction:
    return AgentAction(kind, unit, reason)


RELOAD = act(K.RELOAD, "", R.UNIT_FILES_CHANGED)

CASES = [
    pytest.param({}, {}, [], id="nothing-to-do"),
    pytest.param(
        {"a.service": DesiredUnit("h1", LOADED)},
        {},
        [act(K.LOAD, "a.service", R.NOT_LOADED), RELOAD],
        id="scheduled-loaded-not-present-loads",
    ),
    pytest.param(
        {"a.service": DesiredUnit("h1", LAUNCHED)},
        {},
        [
            act(K.LOAD, "a.service", R.NOT_LOADED),
            RELOAD,
            act(K.START, "a.service", R.WANT_LAUNCHED),
        ],
        id="scheduled-launched-not-present-loads-and-starts",
    ),
    pytest.param(
        {},
        {"a.service": CurrentUnit("h1", LAUNCHED)},
        [act(K.UNLOAD, "a.service", R.NOT_SCHEDULED), RELOAD],
        id="not-scheduled-unloads",
    ),
    pytest.param(
        {"a.service": DesiredUnit("h1", INACTIVE)},
        {"a.service": CurrentUnit("h1", LOADED)},
        [act(K.UNLOAD, "a.service", R.NOT_SCHEDULED), RELOAD],
        id="desired-inactive-counts-as-absent",
    ),
    pytest.param(
        {"a.service": DesiredUnit("h2", LAUNCHED)},
        {"a.service": CurrentUnit("h1", LAUNCHED)},
        [
            act(K.UNLOAD, "a.service", R.CHANGED),
            act(K.LOAD, "a.service", R.CHANGED),
            RELOAD,
            act(K.START, "a.service", R.WANT_LAUNCHED),
        ],
        id="hash-changed-unload-load-start",
    ),
    pytest.param(
        {"a.service": DesiredUnit("h1", LAUNCHED)},
        {"a.service": CurrentUnit("h1", LOADED)},
        [act(K.START, "a.service", R.WANT_LAUNCHED)],
        id="loaded-to-launched-starts-without-reload",
    ),
    pytest.param(
        {"a.service": DesiredUnit("h1", LOADED)},
        {"a.service": CurrentUnit("h1", LAUNCHED)},
        [act(K.STOP, "a.service", R.WANT_LOADED)],
        id="launched-to-loaded-stops",
    ),
    pytest.param(
        {"a.service": DesiredUnit("h1", LAUNCHED)},
        {"a.service": CurrentUnit("h1", LAUNCHED)},
        [],
        id="already-running-no-action",
    ),
    pytest.param(
        {
            "b.service": DesiredUnit("h", LAUNCHED),
            "c.service": DesiredUnit("h", LOADED),
            "d.service": DesiredUnit("h", LAUNCHED),
        },
        {
            "a.service": CurrentUnit("h", LAUNCHED),
            "c.service": CurrentUnit("h", LAUNCHED),
            "d.service": CurrentUnit("h", LOADED),
        },
        [
            act(K.UNLOAD, "a.service", R.NOT_SCHEDULED),
            act(K.LOAD, "b.service", R.NOT_LOADED),
            RELOAD,
            act(K.STOP, "c.service", R.WANT_LOADED),
            act(K.START, "b.service", R.WANT_LAUNCHED),
            act(K.START, "d.service", R.WANT_LAUNCHED),
        ],
        id="fleet-order-unload-load-reload-stop-start",
    ),
]


@pytest.mark.parametrize(("desired", "current", "expected"), CASES)
def test_plan_agent_table(
    desired: dict[str, DesiredUnit],
    current: dict[str, CurrentUnit],
    expected: list[AgentAction],
) -> None:
    assert plan_agent(desired, current) == expected


def test_reason_texts_are_fleets() -> None:
    assert str(R.NOT_LOADED) == "unit scheduled here but not loaded"
    assert str(R.NOT_SCHEDULED) == "unit loaded but not scheduled here"
    assert str(act(K.LOAD, "a.service", R.NOT_LOADED)) == (
        "type=LOAD unit=a.service reason='unit scheduled here but not loaded'"
    )


names = st.sampled_from([f"u{i}.service" for i in range(6)])
hashes = st.sampled_from(["h1", "h2", "h3"])
desired_maps = st.dictionaries(
    names, st.builds(DesiredUnit, hashes, st.sampled_from([INACTIVE, LOADED, LAUNCHED]))
)
current_maps = st.dictionaries(
    names, st.builds(CurrentUnit, hashes, st.sampled_from([LOADED, LAUNCHED]))
)


def effective(desired: dict[str, DesiredUnit]) -> dict[str, CurrentUnit]:
    return {
        name: CurrentUnit(unit.hash, unit.state)
        for name, unit in desired.items()
        if unit.state is not INACTIVE
    }


@given(desired_maps, current_maps)
def test_applying_a_plan_reaches_desired_and_is_a_fixed_point(
    desired: dict[str, DesiredUnit], current: dict[str, CurrentUnit]
) -> None:
    actions = plan_agent(desired, current)
    after = apply_plan(current, desired, actions)
    assert after == effective(desired)
    assert plan_agent(desired, after) == []


@given(desired_maps, current_maps)
def test_plan_order_and_single_reload(
    desired: dict[str, DesiredUnit], current: dict[str, CurrentUnit]
) -> None:
    actions = plan_agent(desired, current)
    kinds = [a.kind for a in actions]
    assert kinds == sorted(kinds)
    reloads = kinds.count(K.RELOAD)
    assert reloads == (1 if {K.LOAD, K.UNLOAD} & set(kinds) else 0)
    # A unit is started only if it is (or will be) loaded with the desired hash.
    for a in actions:
        if a.kind is K.START:
            assert desired[a.unit].state is LAUNCHED


def machine(**metadata: str) -> Machine:
    return Machine(id="m1" + "0" * 30, metadata=metadata)


def test_desired_units_scheduled_plus_matching_globals() -> None:
    schedule = {
        "a.service": Job("a.service", "ha", LAUNCHED),
        "off.service": Job("off.service", "ho", INACTIVE),
    }
    globals_ = {
        "g1.service": Job("g1.service", "hg1", LAUNCHED),
        "g2.service": Job("g2.service", "hg2", LOADED),
        "g3.service": Job("g3.service", "hg3", LAUNCHED),
    }
    reqs = {
        "g1.service": Requirements(is_global=True),
        "g2.service": Requirements(
            is_global=True, metadata=(MetadataConstraint("az", MetadataOp.EQ, "b"),)
        ),
        # g3's body could not be read: no requirements, left out.
    }
    got = desired_units(machine(az="a"), schedule, globals_, reqs)
    assert got == {
        "a.service": DesiredUnit("ha", LAUNCHED),
        "g1.service": DesiredUnit("hg1", LAUNCHED),
    }
    got_b = desired_units(machine(az="b"), schedule, globals_, reqs)
    assert set(got_b) == {"a.service", "g1.service", "g2.service"}
    assert got_b["g2.service"] == DesiredUnit("hg2", LOADED)


def test_a_global_unit_waits_for_a_conflicting_scheduled_unit_either_way() -> None:
    schedule = {
        "job.service": Job("job.service", "hj", LAUNCHED),
        "picky.service": Job("picky.service", "hp", LOADED),
        "off.service": Job("off.service", "ho", INACTIVE),
    }
    globals_ = {
        name: Job(name, "h" + name, LAUNCHED)
        for name in ("ga.service", "gb.service", "gc.service", "gd.service")
    }
    reqs = {
        "ga.service": Requirements(is_global=True, conflicts=("job*",)),  # its glob
        "gb.service": Requirements(is_global=True),  # picky's glob names it
        "gc.service": Requirements(is_global=True, conflicts=("off.service",)),  # inactive
        "gd.service": Requirements(is_global=True, conflicts=("nothing*",)),
    }
    scheduled = {
        "job.service": Requirements(),
        "picky.service": Requirements(conflicts=("gb.service",)),
        "off.service": Requirements(conflicts=("gd.service",)),
    }
    got = desired_units(machine(), schedule, globals_, reqs, scheduled)
    assert set(got) == {"job.service", "picky.service", "gc.service", "gd.service"}
    # Without the scheduled units' requirements the old rule holds (globals only).
    assert set(desired_units(machine(), schedule, globals_, reqs)) == {
        "job.service", "picky.service", "ga.service", "gb.service", "gc.service", "gd.service",
    }  # fmt: skip
