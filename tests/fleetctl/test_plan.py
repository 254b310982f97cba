"""`fleetctl plan` (B14): the pure decision over a listed cluster."""

from __future__ import annotations

import pytest

from fleet.core.model import DesiredState, Machine
from fleet.core.requirements import parse_requirements
from fleet.core.scheduler import SchedUnit
from fleet.core.unitfile import UnitFile
from fleet.core.views import UnitInfo
from fleetctl.commands.plan import Outcome, decide

M1 = Machine("a" * 32, "10.0.0.1", {"disk": "ssd"})
M2 = Machine("b" * 32, "10.0.0.2", {"disk": "hdd"})


def unit(x_fleet: str = "") -> UnitFile:
    return UnitFile.parse(f"[Service]\nExecStart=/bin/true\n{x_fleet}")


def started(name: str, x_fleet: str = "") -> SchedUnit:
    body = unit(x_fleet)
    return SchedUnit(name, body.hash, DesiredState.LAUNCHED, parse_requirements(name, body))


def running(name: str, machine: Machine, x_fleet: str = "") -> UnitInfo:
    body = unit(x_fleet)
    return UnitInfo(
        name, body, body.hash, DesiredState.LAUNCHED, DesiredState.LAUNCHED, machine.id, False, None
    )


@pytest.mark.parametrize(
    ("infos", "wanted", "expected"),
    [
        pytest.param(
            [],
            started("web.service", "[X-Fleet]\nMachineMetadata=disk=hdd\n"),
            Outcome(
                "web.service",
                (M2.id,),
                "placed on the least-loaded machine that satisfies its requirements",
            ),
            id="metadata",
        ),
        pytest.param(
            [running("busy.service", M1)],
            started("web.service"),
            Outcome(
                "web.service",
                (M2.id,),
                "placed on the least-loaded machine that satisfies its requirements",
            ),
            id="least-loaded",
        ),
        pytest.param(
            [running("web.service", M1)],
            started("web.service"),
            Outcome("web.service", (M1.id,), "already scheduled there"),
            id="already-scheduled",
        ),
        pytest.param(
            [],
            started("g.service", "[X-Fleet]\nGlobal=true\nMachineMetadata=disk=ssd\n"),
            Outcome("g.service", (M1.id,), "global unit: runs on every machine that fits"),
            id="global",
        ),
    ],
)
def test_decide(infos: list[UnitInfo], wanted: SchedUnit, expected: Outcome) -> None:
    assert decide(infos, [M1, M2], {wanted.name: wanted}) == [expected]


def test_decide_unplaceable_names_rule_and_machines() -> None:
    wanted = started("nope.service", "[X-Fleet]\nMachineMetadata=disk=nvme\n")
    [outcome] = decide([], [M1, M2], {wanted.name: wanted})
    assert outcome.machines == ()
    assert "MachineMetadata" in outcome.reason
    assert "aaaaaaaa" in outcome.reason
    assert "bbbbbbbb" in outcome.reason


def test_decide_counts_conflicts_with_running_units() -> None:
    wanted = started("c2.service", "[X-Fleet]\nConflicts=c*.service\n")
    infos = [running("c1.service", M1), running("c3.service", M2)]
    [outcome] = decide(infos, [M1, M2], {wanted.name: wanted})
    assert outcome.machines == ()
    assert "Conflicts" in outcome.reason


def test_decide_says_how_spread_by_chose() -> None:
    zone_a = Machine("a" * 32, "10.0.0.1", {"zone": "a"})
    zone_b = Machine("b" * 32, "10.0.0.2", {"zone": "b"})
    spread = "[X-Fleet]\nSpreadBy=zone\nMaxPerMachine=1\n"
    infos = [running("web@1.service", zone_a, spread), running("web@2.service", zone_b, spread)]
    wanted = {n: started(n, spread) for n in ("web@3.service", "web@4.service")}
    zone_c = Machine("c" * 32, "10.0.0.3", {"zone": "c"})
    assert decide(infos, [zone_a, zone_b, zone_c], wanted) == [
        Outcome(
            "web@3.service",
            (zone_c.id,),
            "placed where SpreadBy keeps its template's instances even "
            "(zone=c held 0 of 2 instances of web@.service; the machine held 0 units)",
        ),
        Outcome(
            "web@4.service",
            (),
            "web@4.service cannot be placed on any of the 3 machines. MaxPerMachine: holds 1 "
            "instance of web@.service already (MaxPerMachine=1) [on aaaaaaaa, bbbbbbbb and "
            "cccccccc].",
        ),
    ]
