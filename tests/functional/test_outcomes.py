"""Every launch has an honest outcome, on real systemd machines.

``fleetctl start`` of a unit that fails, that crash-loops, or that simply runs and
exits returns soon after systemd's verdict with the fitting exit code and line;
a unit its agent cannot even load (a poisoned entry written straight into etcd,
past every validation) is reported and leaves the machine's other units fully
controllable. These run on the session's 3-machine cluster.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fleet.core.model import DesiredState
from fleet.core.unitfile import UnitFile
from fleet.registry.etcd import EtcdRegistry
from tests.functional.cluster import Cluster
from tests.functional.unitviews import list_units, poll, unit_path

pytestmark = pytest.mark.functional

# systemd's verdict comes within a second for these units; fleetctl then needs
# one poll (0.25 s) and its own start-up.
VERDICT_BUDGET = 5.0


OUTCOMES = {
    "failing": (
        "[Service]\nExecStart=/bin/false\n",
        1,
        "Result=exit-code",
    ),
    "crash-looping": (
        "[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=30s\n",
        1,
        "Result=exit-code, systemd keeps restarting it",
    ),
    "oneshot": (
        "[Service]\nType=oneshot\nExecStart=/bin/true\n",
        0,
        "ran and exited successfully",
    ),
    "exits-zero": (
        "[Service]\nExecStart=/bin/true\n",
        0,
        "ran and exited successfully",
    ),
}


@pytest.mark.parametrize("kind", sorted(OUTCOMES))
def test_start_returns_on_systemds_verdict(fleet: Cluster, tmp_path: Path, kind: str) -> None:
    body, code, words = OUTCOMES[kind]
    path = tmp_path / f"outcome-{kind}.service"
    path.write_text(body)
    started = time.monotonic()
    result = fleet.fleetctl("start", str(path), check=False, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == code, result.stderr
    assert elapsed < VERDICT_BUDGET, f"start took {elapsed:.1f}s"
    if code:
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"Unit {path.name} failed on ")
        assert words in line
        assert line.endswith(f"(see fleetctl status {path.name}; fleetctl journal {path.name})")
        listed = fleet.fleetctl("list-unit-files", "--no-legend", "--fields=unit,reason")
        assert "failed on " in listed.stdout
        assert words in listed.stdout
    else:
        assert result.stderr == ""
        last = result.stdout.splitlines()[-1]
        assert last.startswith(f"Unit {path.name} {words} on ")


def _registry_call(cluster: Cluster, work: str, name: str, body: str = "") -> None:
    async def run() -> None:
        async with await EtcdRegistry.connect(
            [cluster.endpoint], cluster.config.key_prefix
        ) as registry:
            if work == "create":
                unit = UnitFile.parse(body)
                await registry.create_unit(
                    name, unit.serialize(), unit.hash, DesiredState.LAUNCHED, False
                )
            else:
                await registry.destroy_unit(name)

    asyncio.run(run())


def test_a_poisoned_unit_leaves_the_other_units_controllable(fleet: Cluster) -> None:
    """A name that cannot be a file (``..service``), written straight into etcd: its
    agent reports it and retries it, and the other units still start and stop."""
    poisoned = "..service"
    _registry_call(fleet, "create", poisoned, "[Service]\nExecStart=/usr/bin/sleep 1000\n")
    try:
        rows = poll(
            fleet,
            lambda: [r for r in list_units(fleet) if r.unit == poisoned],
            bool,
            "the poisoned unit reported",
        )
        assert rows[0].active == "inactive"
        reasons = fleet.fleetctl("list-unit-files", "--no-legend", "--fields=unit,reason")
        assert f"{poisoned}\tfailed on " in reasons.stdout
        assert "cannot be a file in the units directory" in reasons.stdout
        # Whichever machine holds it, every machine still does its other work.
        for name in ("hello.service", "hello@1.service", "hello@2.service"):
            fleet.fleetctl("start", unit_path(name))
        placed = poll(
            fleet,
            lambda: {r.unit for r in list_units(fleet) if r.active == "active"},
            lambda active: {"hello.service", "hello@1.service", "hello@2.service"} <= active,
            "the other units active",
        )
        assert poisoned not in placed
        fleet.fleetctl("stop", "hello.service", "hello@1.service", "hello@2.service")
        poll(
            fleet,
            lambda: {r.unit for r in list_units(fleet) if r.active == "active"},
            lambda active: not active,
            "the other units stopped",
        )
    finally:
        _registry_call(fleet, "destroy", poisoned)
