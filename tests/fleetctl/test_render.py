"""Pure renderers: fields, legends, ``-`` for missing values, JSON shape."""

from __future__ import annotations

import json

import pytest

from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.unitfile import UnitFile
from fleet.core.views import UnitInfo
from fleet.errors import InvalidInput
from fleetctl import render

MACHINE_ID = "113f16a7f33e4e2ca5d1d0a0f1bd38bb"
MACHINES = {MACHINE_ID: Machine(MACHINE_ID, "172.17.8.103", {"region": "us", "az": "a"})}
UNIT = UnitFile.parse("[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/true\n")


def info(
    name: str = "hello.service",
    *,
    current: DesiredState | None = DesiredState.LAUNCHED,
    machine_id: str | None = MACHINE_ID,
    is_global: bool = False,
    reason: str | None = None,
) -> UnitInfo:
    return UnitInfo(
        name=name,
        unit=UNIT,
        hash=UNIT.hash,
        desired=DesiredState.LAUNCHED,
        current=current,
        machine_id=machine_id,
        is_global=is_global,
        reason=reason,
    )


@pytest.mark.parametrize(
    ("spec", "valid", "expected"),
    [
        pytest.param("unit", ["unit"], ["unit"], id="one"),
        pytest.param("unit,hash", ["unit", "hash"], ["unit", "hash"], id="two-in-order"),
        pytest.param("hash,unit", ["unit", "hash"], ["hash", "unit"], id="order-kept"),
    ],
)
def test_parse_fields(spec: str, valid: list[str], expected: list[str]) -> None:
    assert render.parse_fields(spec, valid) == expected


VALID = " (valid: unit, hash, dstate, state, target, tmachine, global, desc, reason)"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("", "Must define output format", id="empty"),
        pytest.param("unit,x", 'Invalid key in output format: "x"' + VALID, id="unknown"),
        pytest.param("unit,", 'Invalid key in output format: ""' + VALID, id="trailing-comma"),
        pytest.param('a"b', 'Invalid key in output format: "a\\"b"' + VALID, id="go-quoted"),
    ],
)
def test_parse_fields_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        render.parse_fields(spec, render.UNIT_FILE_FIELDS)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("machine_id", "full", "expected"),
    [
        pytest.param(MACHINE_ID, False, "113f16a7.../172.17.8.103", id="short-with-ip"),
        pytest.param(MACHINE_ID, True, f"{MACHINE_ID}/172.17.8.103", id="full-with-ip"),
        pytest.param("deadbeef00", False, "deadbeef...", id="unknown-machine-no-ip"),
    ],
)
def test_machine_legend(machine_id: str, full: bool, expected: str) -> None:
    assert render.Legend(MACHINES, full).machine(machine_id) == expected


UNIT_FILE_ROWS = [
    pytest.param(
        info(),
        "unit,hash,dstate,state,target",
        False,
        f"hello.service\t{UNIT.hash[:7]}\tlaunched\tlaunched\t113f16a7.../172.17.8.103",
        id="scheduled",
    ),
    pytest.param(
        info(current=DesiredState.INACTIVE, machine_id=None),
        "unit,state,target",
        False,
        "hello.service\tinactive\t-",
        id="unscheduled-target-dash",
    ),
    pytest.param(
        info(current=None, machine_id=None, is_global=True),
        "unit,state,target,global",
        False,
        "hello.service\t-\tglobal\ttrue",
        id="global-state-dash-target-global",
    ),
    pytest.param(info(), "hash", True, UNIT.hash, id="full-hash"),
    pytest.param(info(), "desc,reason", False, "Hello World\t-", id="desc-and-no-reason"),
    pytest.param(
        info(current=DesiredState.INACTIVE, machine_id=None, reason="no machine has region=eu"),
        "reason",
        False,
        "no machine has region=eu",
        id="reason",
    ),
    pytest.param(info(), "tmachine", True, f"{MACHINE_ID}/172.17.8.103", id="tmachine-alias"),
]


@pytest.mark.parametrize(("unit", "fields", "full", "row"), UNIT_FILE_ROWS)
def test_unit_file_rows(unit: UnitInfo, fields: str, full: bool, row: str) -> None:
    text = render.render_unit_files(
        [unit], fields.split(","), render.Legend(MACHINES, full), header=False
    )
    assert text.replace("\t\t", "\t").rstrip("\n").split("\t") == row.split("\t")


def test_unit_files_header_is_upper_cased_field_names() -> None:
    text = render.render_unit_files([], ["unit", "tmachine"], render.Legend({}))
    assert text == "UNIT\tTMACHINE\n"


def test_missing_values_print_dash() -> None:
    state = UnitState("a.service", MACHINE_ID, "", "active", "", "")
    text = render.render_units(
        [state], ["unit", "load", "sub", "hash"], render.Legend(MACHINES), header=False
    )
    assert text == "a.service\t-\t-\t-\n"


def test_units_sorted_by_name_then_machine() -> None:
    states = [
        UnitState("b.service", "m2", "loaded", "active", "running", "h"),
        UnitState("a.service", "m2", "loaded", "active", "running", "h"),
        UnitState("a.service", "m1", "loaded", "active", "running", "h"),
    ]
    text = render.render_units(
        states, ["unit", "machine"], render.Legend({}, full=True), header=False
    )
    assert text.splitlines() == ["a.service\tm1", "a.service\tm2", "b.service\tm2"]


def test_machines_metadata_sorted_and_dash_when_empty() -> None:
    machines = [Machine("b" * 32), Machine(MACHINE_ID, "172.17.8.103", {"region": "us", "az": "a"})]
    text = render.render_machines(
        machines, ["machine", "ip", "metadata"], render.Legend({}), header=False
    )
    assert text.splitlines() == [
        "113f16a7...\t172.17.8.103\taz=a,region=us",
        "bbbbbbbb...\t-\t\t-",
    ]


def test_unit_files_json_has_stable_snake_case_keys() -> None:
    items = json.loads(render.unit_files_json([info(reason="why")], MACHINES))
    assert items == [
        {
            "unit": "hello.service",
            "hash": UNIT.hash,
            "desired_state": "launched",
            "current_state": "launched",
            "global": False,
            "target_machine_id": MACHINE_ID,
            "target_ip": "172.17.8.103",
            "description": "Hello World",
            "reason": "why",
            "failure": None,
        }
    ]


def test_units_and_machines_json() -> None:
    state = UnitState("a.service", MACHINE_ID, "loaded", "active", "running", "abc")
    assert json.loads(render.units_json([state], MACHINES)) == [
        {
            "unit": "a.service",
            "machine_id": MACHINE_ID,
            "machine_ip": "172.17.8.103",
            "load_state": "loaded",
            "active_state": "active",
            "sub_state": "running",
            "hash": "abc",
        }
    ]
    assert json.loads(render.machines_json(MACHINES.values())) == [
        {
            "machine_id": MACHINE_ID,
            "ip": "172.17.8.103",
            "metadata": {"az": "a", "region": "us"},
            "cordoned": False,
            "cordon_reason": None,
            "status": "ok",
            "lost_since": None,
            "leader": False,
            "version": None,
            "units": None,
        }
    ]


@pytest.mark.parametrize(
    ("unit", "known", "line"),
    [
        pytest.param(
            info(),
            MACHINES,
            "Unit hello.service launched on 113f16a7.../172.17.8.103",
            id="on-machine",
        ),
        pytest.param(info(), {}, "Unit hello.service launched", id="machine-gone"),
        pytest.param(
            info(current=None, machine_id=None, is_global=True),
            {},
            "Unit hello.service launched",
            id="global-uses-desired",
        ),
    ],
)
def test_state_reached_line(unit: UnitInfo, known: dict[str, Machine], line: str) -> None:
    assert render.state_reached_line(unit, render.Legend(known)) == line


def test_go_list() -> None:
    assert render.go_list(["a.service", "b.service"]) == "[a.service b.service]"
    assert render.go_list([]) == "[]"
