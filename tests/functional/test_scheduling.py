"""fleet's scheduling scenarios (``functional/scheduling_test.go`` and friends) on real machines.

Each test is one of fleet's acceptance tests, named after it: Conflicts,
MachineOf, Replaces, MachineID, MachineMetadata with template specifiers,
global units, ``[Install]`` sidekicks, and feature B1 (an unplaceable unit
fails fast with the reason). Scenarios that fit the session's 3-machine
cluster use it and destroy their units; those that need another machine count
or stop a machine's fleetd get a fresh cluster from ``cluster_factory``.
Every placement fleet reports is also checked in the machine's own systemd.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.functional.cluster import Cluster
from tests.functional.unitviews import (
    UNITS,
    active_count,
    active_units,
    assert_systemd_runs,
    list_unit_files,
    list_units,
    poll,
    remote_flags,
    systemd_state,
    unit_path,
    wait_active,
    wait_unit_files,
)

pytestmark = pytest.mark.functional

ClusterFactory = Callable[..., Cluster]


def single(placed: dict[str, list[str]]) -> dict[str, str]:
    """unit -> its one machine (fleet's ActiveToSingleStates)."""
    out = {}
    for unit, machines in placed.items():
        assert len(machines) == 1, f"{unit} active on {len(machines)} machines"
        out[unit] = machines[0]
    return out


def unit_reasons(cluster: Cluster) -> dict[str, str]:
    """unit -> why the engine could not place it (B1's ``reason`` field), ``-`` if placed."""
    out = cluster.fleetctl(
        "list-unit-files", "--no-legend", "--full", "--fields", "unit,reason"
    ).stdout
    rows = (line.partition("\t") for line in out.splitlines() if line.strip())
    return {unit: reason.strip() for unit, _, reason in rows}


def main_pid(cluster: Cluster, machine_id: str, unit: str) -> str:
    proc = cluster.systemctl(machine_id, "show", "-p", "MainPID", "--value", unit)
    pid = proc.stdout.strip()
    assert pid not in ("", "0"), f"{unit} has no main process on {machine_id}"
    return pid


# --- Conflicts ----------------------------------------------------------------------------


def test_schedule_conflicts(fleet: Cluster) -> None:
    """TestScheduleConflicts: 5 mutually conflicting units on 3 machines: exactly 3 run,
    one per machine."""
    for i in range(5):
        fleet.fleetctl("start", "--no-block", unit_path(f"conflict.{i}.service"))
    assert len(list_unit_files(fleet)) == 5
    placed = single(wait_active(fleet, 3))
    assert all(unit.startswith("conflict.") for unit in placed)
    assert len(set(placed.values())) == 3
    assert_systemd_runs(fleet, {u: [m] for u, m in placed.items()})
    # The two left over are wanted but placed nowhere.
    files = list_unit_files(fleet)
    waiting = sorted(u for u, f in files.items() if f.state == "inactive")
    assert len(waiting) == 2
    assert not set(waiting) & set(placed)
    assert {files[u].dstate for u in waiting} == {"launched"}


def test_schedule_multiple_conflicts(fleet: Cluster) -> None:
    """TestScheduleMultipleConflicts: Conflicts listed space-separated or on several
    lines keep 3 units on 3 distinct machines."""
    fleet.fleetctl("start", *(unit_path(f"conflict.multiple.{i}.service") for i in range(3)))
    placed = single(wait_active(fleet, 3))
    assert sorted(placed) == [f"conflict.multiple.{i}.service" for i in range(3)]
    assert len(set(placed.values())) == 3
    assert_systemd_runs(fleet, {u: [m] for u, m in placed.items()})


def test_schedule_one_way_conflict(cluster_factory: ClusterFactory) -> None:
    """TestScheduleOneWayConflict: on one machine, a unit with Conflicts=hello.service
    keeps hello (which declares nothing) off; destroying it lets hello start."""
    fleet = cluster_factory(1)
    fleet.fleetctl("start", "--no-block", unit_path("conflicts-with-hello.service"))
    assert list(wait_active(fleet, 1)) == ["conflicts-with-hello.service"]
    fleet.fleetctl("start", "--no-block", unit_path("hello.service"))
    files = wait_unit_files(fleet, 2)
    assert files["hello.service"].dstate == "launched"
    # The engine has looked at hello and recorded why it stays unplaced (B1).
    why = poll(
        fleet,
        lambda: unit_reasons(fleet).get("hello.service", "-"),
        lambda reason: reason != "-",
        "the engine's reason for hello.service",
    )
    assert "Conflicts" in why, why
    assert "conflicts-with-hello.service" in why, why
    assert list(active_units(fleet)) == ["conflicts-with-hello.service"]
    assert list_unit_files(fleet)["hello.service"].state == "inactive"
    (machine,) = fleet.machines
    assert systemd_state(fleet, machine.machine_id, "hello.service") == "inactive"

    fleet.fleetctl("destroy", "conflicts-with-hello.service")
    poll(
        fleet,
        lambda: list_units(fleet),
        lambda rows: all(row.unit != "conflicts-with-hello.service" for row in rows),
        "conflicts-with-hello.service gone from list-units",
    )
    placed = wait_active(fleet, 1)
    assert list(placed) == ["hello.service"]
    assert_systemd_runs(fleet, placed)


# --- MachineOf ----------------------------------------------------------------------------


def test_schedule_machine_of(cluster_factory: ClusterFactory) -> None:
    """TestScheduleMachineOf: each pong.N runs with its ping.N; when fleetd stops on
    ping.1's machine, ping.1 and pong.1 move to another machine together."""
    fleet = cluster_factory(3)
    for i in range(3):
        fleet.fleetctl(
            "start", "--no-block", unit_path(f"ping.{i}.service"), unit_path(f"pong.{i}.service")
        )
    assert len(list_unit_files(fleet)) == 6
    placed = single(wait_active(fleet, 6))
    for i in range(3):
        assert placed[f"pong.{i}.service"] == placed[f"ping.{i}.service"], placed
    assert_systemd_runs(fleet, {u: [m] for u, m in placed.items()})

    old = placed["ping.1.service"]
    fleet.systemctl(old, "stop", "fleet.service", check=True)
    poll(fleet, fleet.registered, lambda ids: old not in ids and len(ids) == 2, "2 machines")
    moved = poll(
        fleet,
        lambda: single(active_units(fleet)),
        lambda now: len(now) == 6 and now.get("ping.1.service", old) != old,
        "ping.1.service active on another machine",
    )
    assert moved["pong.1.service"] == moved["ping.1.service"], moved
    for i in (0, 2):
        if placed[f"ping.{i}.service"] != old:
            # Pairs whose machine stayed up do not move.
            assert moved[f"ping.{i}.service"] == placed[f"ping.{i}.service"]
    assert_systemd_runs(fleet, {u: [m] for u, m in moved.items()})


# --- Replaces -----------------------------------------------------------------------------


def test_schedule_replace(cluster_factory: ClusterFactory) -> None:
    """TestScheduleReplace: on 2 machines, replace-kick0 (Replaces=replace.0) takes
    replace.0's machine and replace.0 moves to the other one."""
    fleet = cluster_factory(2)
    fleet.fleetctl("start", unit_path("replace.0.service"))
    fleet.fleetctl("start", unit_path("replace.1.service"), unit_path("replace.2.service"))
    before = single(wait_active(fleet, 3))
    assert before["replace.2.service"] == before["replace.1.service"]
    fleet.fleetctl("start", "--no-block", unit_path("replace-kick0.service"))
    assert len(wait_unit_files(fleet, 4)) == 4
    after = poll(
        fleet,
        lambda: single(active_units(fleet)),
        lambda now: len(now) == 4 and now["replace.0.service"] != before["replace.0.service"],
        "4 active units, replace.0.service moved",
    )
    assert after["replace-kick0.service"] == before["replace.0.service"]
    assert after["replace.0.service"] != after["replace-kick0.service"]
    assert after["replace.2.service"] == after["replace.1.service"]
    assert_systemd_runs(fleet, {u: [m] for u, m in after.items()})
    assert systemd_state(fleet, before["replace.0.service"], "replace.0.service") != "active"


def test_schedule_circular_replace(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    """TestScheduleCircularReplace: two units that replace each other do not displace
    each other (fleet ignores a circular Replaces pair), so neither churns.

    On one machine, where Replaces is the only thing that could separate them:
    fleet's table expects "only 1 active" on 2 machines, but fleet's own test
    read its counts before the second unit could start, and fleet's engine puts
    the second unit on the idle machine anyway.
    """
    fleet = cluster_factory(1)
    (machine,) = fleet.machines
    replace0 = tmp_path / "replace.0.service"
    replace0.write_text(
        (UNITS / "replace.0.service").read_text() + "\n[X-Fleet]\nReplaces=replace-kick0.service\n"
    )
    fleet.fleetctl("start", str(replace0))
    assert list(wait_unit_files(fleet, 1)) == ["replace.0.service"]
    assert list(wait_active(fleet, 1)) == ["replace.0.service"]
    pid = main_pid(fleet, machine.machine_id, "replace.0.service")

    fleet.fleetctl("start", "--no-block", unit_path("replace-kick0.service"))
    assert len(wait_unit_files(fleet, 2)) == 2
    placed = wait_active(fleet, 2)
    assert sorted(placed) == ["replace-kick0.service", "replace.0.service"]
    # A few engine passes later both still run, and replace.0 was never restarted.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        files = list_unit_files(fleet)
        assert {f.state for f in files.values()} == {"launched"}, files
        time.sleep(0.25)  # sampling: both must stay launched throughout
    assert main_pid(fleet, machine.machine_id, "replace.0.service") == pid
    assert_systemd_runs(fleet, active_units(fleet))


# --- MachineID / MachineMetadata ----------------------------------------------------------


def test_schedule_condition_machine_id(fleet: Cluster, tmp_path: Path) -> None:
    """TestScheduleConditionMachineID: a unit with MachineID=<id> runs on that machine."""
    wanted: dict[str, str] = {}
    for machine in fleet.machines:
        name = f"pinned-{machine.name}.service"
        (tmp_path / name).write_text(
            "[Service]\n"
            'ExecStart=/bin/bash -c "while true; do echo Hello, World!; sleep 1; done"\n\n'
            f"[X-Fleet]\nMachineID={machine.machine_id}\n"
        )
        fleet.fleetctl("start", str(tmp_path / name))
        wanted[name] = machine.machine_id
    placed = single(wait_active(fleet, 3))
    assert placed == wanted
    assert_systemd_runs(fleet, {u: [m] for u, m in placed.items()})


def test_templates_with_specifiers_in_metadata(fleet: Cluster) -> None:
    """TestTemplatesWithSpecifiersInMetadata: ``MachineMetadata=hostname=%i`` puts
    ``metadata@<name>`` on the machine named so; an instance no machine matches fails
    fast (feature B1) instead of waiting out ``--block-attempts``."""
    fleet.fleetctl("submit", unit_path("metadata@.service"))
    machines = fleet.machines
    for machine in reversed(machines):
        fleet.fleetctl("start", f"metadata@{machine.name}.service")
    placed = single(wait_active(fleet, 3))
    assert placed == {f"metadata@{m.name}.service": m.machine_id for m in machines}
    assert_systemd_runs(fleet, {u: [m] for u, m in placed.items()})

    started = time.monotonic()
    invalid = fleet.fleetctl(
        "start", "--block-attempts=20", "metadata@invalid.service", check=False
    )
    elapsed = time.monotonic() - started
    assert invalid.returncode == 2, invalid
    assert elapsed < 10, f"took {elapsed:.1f}s (20 attempts would be ~40s)"
    assert "metadata@invalid.service cannot be placed" in invalid.stderr
    assert "MachineMetadata" in invalid.stderr
    assert "hostname=invalid" in invalid.stderr
    assert active_count(active_units(fleet)) == 3


# --- global units -------------------------------------------------------------------------


def test_schedule_global_units(fleet: Cluster, tmp_path: Path) -> None:
    """TestScheduleGlobalUnits: a global unit runs on every machine next to ordinary
    units; ``status --no-block`` of it succeeds; ``restart`` restarts every instance."""
    fleet.fleetctl("start", unit_path("hello.service"), unit_path("goodbye.service"))
    assert sorted(wait_active(fleet, 2)) == ["goodbye.service", "hello.service"]
    fleet.fleetctl("start", unit_path("global.service"))
    placed = wait_active(fleet, 5)
    every = sorted(m.machine_id for m in fleet.machines)
    assert sorted(placed["global.service"]) == every
    assert_systemd_runs(fleet, placed)
    files = list_unit_files(fleet)
    assert (files["global.service"].dstate, files["global.service"].state) == ("launched", "-")

    flags = remote_flags(fleet, tmp_path)
    status = fleet.fleetctl(*flags, "status", "--no-block", "global.service", check=False)
    assert status.returncode == 0, status
    assert status.stdout.count("Loaded: loaded") == 3, status.stdout

    pids = {m: main_pid(fleet, m, "global.service") for m in every}
    fleet.fleetctl(*flags, "restart", "global.service")
    placed = wait_active(fleet, 5)
    assert sorted(placed["global.service"]) == every
    assert_systemd_runs(fleet, placed)
    after = {m: main_pid(fleet, m, "global.service") for m in every}
    assert all(after[m] != pids[m] for m in every), (pids, after)


def test_schedule_global_conflicts(fleet: Cluster) -> None:
    """TestScheduleGlobalConflicts: of two conflicting global units the first one runs
    on every machine and the second on none."""
    fleet.fleetctl("start", unit_path("conflict-global.0.service"))
    fleet.fleetctl("start", unit_path("conflict-global.1.service"))
    placed = wait_active(fleet, 3)
    assert list(placed) == ["conflict-global.0.service"]
    assert sorted(placed["conflict-global.0.service"]) == sorted(
        m.machine_id for m in fleet.machines
    )
    assert_systemd_runs(fleet, placed)
    for machine in fleet.machines:
        assert systemd_state(fleet, machine.machine_id, "conflict-global.1.service") in (
            "inactive",
            "",
        )


# --- [Install] ----------------------------------------------------------------------------


def test_install_unit(fleet: Cluster) -> None:
    """TestInstallUnit: a sidekick with ``[Install] WantedBy=hello.service`` (and
    MachineOf=hello.service) starts when hello starts and stops when hello stops."""
    fleet.fleetctl("load", unit_path("hello.service"), unit_path("discovery.service"))
    rows = {row.unit: row for row in list_units(fleet)}
    machine = rows["hello.service"].machine_id
    assert rows["discovery.service"].machine_id == machine

    def discovery() -> str:
        return systemd_state(fleet, machine, "discovery.service")

    assert discovery() == "inactive"
    fleet.fleetctl("start", "hello.service")
    poll(fleet, discovery, lambda s: s == "active", "discovery.service active")
    fleet.fleetctl("stop", "hello.service")
    poll(fleet, discovery, lambda s: s == "inactive", "discovery.service inactive")
    assert systemd_state(fleet, machine, "hello.service") == "inactive"


# --- feature B1 ---------------------------------------------------------------------------


def test_start_unplaceable_fails_fast(fleet: Cluster) -> None:
    """B1: ``fleetctl start`` of a unit whose MachineMetadata no machine has exits 2
    within seconds, naming the rule and the machines (fleet blocked forever, #1334)."""
    started = time.monotonic()
    proc = fleet.fleetctl("start", unit_path("unplaceable.service"), check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc
    assert elapsed < 5, f"took {elapsed:.1f}s"
    assert "unplaceable.service cannot be placed on any of the 3 machines" in proc.stderr
    assert "MachineMetadata: region=nowhere" in proc.stderr
    for machine in fleet.machines:
        assert machine.machine_id[:8] in proc.stderr, proc.stderr
    files = list_unit_files(fleet)
    assert (files["unplaceable.service"].dstate, files["unplaceable.service"].state) == (
        "launched",
        "inactive",
    )
    assert list_units(fleet) == []
