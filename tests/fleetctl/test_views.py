"""fleet.core.views: fleet's currentState rules joined per unit, and unusable bodies."""

from __future__ import annotations

import pytest

from fleet.core.model import DesiredState, Job, UnitState
from fleet.core.unitfile import UnitFile
from fleet.core.views import build_unit_infos, parse_bodies

PLAIN = UnitFile.parse("[Service]\nExecStart=/bin/true\n")
GLOBAL = UnitFile.parse("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n")
BODIES = {PLAIN.hash: PLAIN, GLOBAL.hash: GLOBAL}


def state(machine: str, fleet_state: DesiredState = DesiredState.LOADED) -> UnitState:
    return UnitState("a.service", machine, "loaded", "active", "running", PLAIN.hash, fleet_state)


CASES = [
    pytest.param({}, [], None, DesiredState.INACTIVE, id="unscheduled-is-inactive"),
    pytest.param({"a.service": "m1"}, [], "m1", DesiredState.INACTIVE, id="scheduled-no-state"),
    pytest.param(
        {"a.service": "m1"},
        [state("m2")],
        "m1",
        DesiredState.INACTIVE,
        id="state-from-other-machine",
    ),
    pytest.param({"a.service": "m1"}, [state("m1")], "m1", DesiredState.LOADED, id="loaded"),
    pytest.param(
        {"a.service": "m1"},
        [state("m1", DesiredState.LAUNCHED)],
        "m1",
        DesiredState.LAUNCHED,
        id="launched",
    ),
]


@pytest.mark.parametrize(("schedule", "states", "machine", "current"), CASES)
def test_current_state(
    schedule: dict[str, str],
    states: list[UnitState],
    machine: str | None,
    current: DesiredState,
) -> None:
    (info,) = build_unit_infos(
        [Job("a.service", PLAIN.hash, DesiredState.LAUNCHED)], BODIES, schedule, states, {}
    )
    assert (info.machine_id, info.current, info.is_global) == (machine, current, False)


def test_global_units_have_no_current_state_or_machine() -> None:
    (info,) = build_unit_infos(
        [Job("g.service", GLOBAL.hash, DesiredState.LAUNCHED)],
        BODIES,
        {"g.service": "m1"},
        [],
        {},
    )
    assert (info.is_global, info.current, info.machine_id) == (True, None, None)


def test_sorted_by_name_reasons_attached_and_bodiless_jobs_dropped() -> None:
    jobs = [
        Job("b.service", PLAIN.hash, DesiredState.LAUNCHED),
        Job("a.service", PLAIN.hash, DesiredState.INACTIVE),
        Job("lost.service", "0" * 40, DesiredState.INACTIVE),
    ]
    infos = build_unit_infos(jobs, BODIES, {}, [], {"b.service": "no machine"})
    assert [(i.name, i.reason) for i in infos] == [("a.service", None), ("b.service", "no machine")]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("not a unit file\n", id="no-section"),
        pytest.param("[Service]\n", id="no-options"),
        pytest.param("[Service\nExecStart=/bin/true\n", id="broken-section"),
    ],
)
def test_an_unparseable_body_hides_its_units_like_a_missing_one(text: str) -> None:
    broken = "b" * 40
    bodies, unparseable = parse_bodies({PLAIN.hash: PLAIN.serialize(), broken: text})
    assert (bodies, unparseable) == ({PLAIN.hash: PLAIN}, [broken])
    jobs = [
        Job("good.service", PLAIN.hash, DesiredState.LAUNCHED),
        Job("bad.service", broken, DesiredState.LAUNCHED),
    ]
    infos = build_unit_infos(jobs, bodies, {"bad.service": "m1"}, [], {"bad.service": "why"})
    assert [info.name for info in infos] == ["good.service"]
