"""Rolling replace and restart (B6) and metadata from the CLI, on real systemd machines.

A rolling replace of ``web@1..4`` whose new content cannot start tries exactly
one instance, leaves the other three running the old content and exits 1;
with ``--on-failure rollback`` the tried one runs the old content again. A
rolling restart of template instances never has more than N of them down. And
``set-metadata`` / ``unset-metadata`` move a unit with ``MachineMetadata=``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fleet.core.unitfile import UnitFile
from tests.functional.cluster import Cluster
from tests.functional.unitviews import list_unit_files, list_units, remote_flags

pytestmark = pytest.mark.functional

OLD = "[Service]\nExecStart=/bin/sleep 3000\n"
BROKEN = "[Service]\nExecStart=/bin/false\n"
WEB = [f"web@{i}.service" for i in range(1, 5)]
FAST = ("--min-healthy-time", "1s", "--healthy-timeout", "20s")


def hashes(cluster: Cluster) -> dict[str, str]:
    out = cluster.fleetctl("list-unit-files", "--no-legend", "--full", "--fields", "unit,hash")
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def active(cluster: Cluster) -> set[str]:
    return {row.unit for row in list_units(cluster) if row.active == "active"}


def start_web(cluster: Cluster, tmp_path: Path, names: list[str]) -> str:
    (tmp_path / "web@.service").write_text(OLD)
    cluster.fleetctl("start", *names, cwd=tmp_path)
    return UnitFile.parse(OLD).hash


@pytest.mark.parametrize("mode", ["pause", "rollback", "continue"])
def test_rolling_replace_stops_at_the_first_failure(
    fleet: Cluster, tmp_path: Path, mode: str
) -> None:
    old = start_web(fleet, tmp_path, WEB)
    (tmp_path / "web@.service").write_text(BROKEN)
    new = UnitFile.parse(BROKEN).hash
    done = fleet.fleetctl(
        "start", "--replace", "--max-parallel", "1", *FAST, "--on-failure", mode, "web@*",
        cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Rolling run failed (--on-failure {mode})" in done.stderr
    assert "web@1.service: new content, FAILED" in done.stderr
    if mode == "continue":
        # Every instance was tried, one at a time, each failing on the broken content.
        for name in WEB:
            assert f"{name}: new content, FAILED" in done.stderr
        assert "new content: " + ", ".join(WEB) in done.stdout
        assert "failed: " + ", ".join(WEB) in done.stdout
        assert hashes(fleet) == dict.fromkeys(WEB, new)
        assert active(fleet) == set()
        return
    # Exactly one instance was tried: the others were never touched.
    assert "web@2.service" not in done.stderr
    assert "old content: web@2.service, web@3.service, web@4.service" in done.stdout
    stored = hashes(fleet)
    if mode == "pause":
        assert stored == {"web@1.service": new, **dict.fromkeys(WEB[1:], old)}
        assert active(fleet) == set(WEB[1:])
        assert list_unit_files(fleet)["web@1.service"].dstate == "launched"
        assert "new content: web@1.service" in done.stdout
        assert "failed: web@1.service" in done.stdout
    else:
        assert "web@1.service: previous content restored, healthy on" in done.stdout
        assert "old content (rolled back): web@1.service" in done.stdout
        assert "failed: web@1.service" in done.stdout
        assert stored == dict.fromkeys(WEB, old)
        assert active(fleet) == set(WEB)


def test_rolling_restart_keeps_all_but_n_instances_up(fleet: Cluster, tmp_path: Path) -> None:
    names = WEB[:3]
    start_web(fleet, tmp_path, names)
    before = {row.unit: row.machine_id for row in list_units(fleet)}
    pids = {n: main_pid(fleet, before[n], n) for n in names}
    seen_down: list[int] = []
    finished = threading.Event()

    def sample() -> None:
        # Sampling: the invariant must hold throughout the run, not just at its end.
        while not finished.is_set():
            seen_down.append(len(set(names) - active(fleet)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        done = fleet.fleetctl(
            "rolling-restart", "--max-parallel", "1", *FAST, "web@*", check=False, timeout=120
        )
    finally:
        finished.set()
        sampler.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "restarted: " + ", ".join(names)
    assert len(seen_down) >= 3
    assert max(seen_down) <= 1
    # Each was restarted (a new main process); a sample may or may not catch one down.
    for name in names:
        assert main_pid(fleet, before[name], name) != pids[name], name


def main_pid(cluster: Cluster, machine_id: str, unit: str) -> str:
    node = next(m for m in cluster.machines if m.machine_id == machine_id)
    out = cluster.systemctl(node, "show", "-p", "MainPID", "--value", unit, check=True)
    return out.stdout.strip()


def test_set_metadata_reschedules_a_unit(fleet: Cluster, tmp_path: Path) -> None:
    first, second = (m.machine_id for m in fleet.machines[:2])
    unit = tmp_path / "rolemeta.service"
    unit.write_text(OLD + "\n[X-Fleet]\nMachineMetadata=rolltest=yes\n")
    fleet.fleetctl("start", "--no-block", str(unit))
    try:
        done = fleet.fleetctl("set-metadata", first[:12], "rolltest=yes")
        assert done.stdout.strip() == f"Set metadata of machine {first}: rolltest=yes"
        fleet.wait_for(
            lambda: [(r.machine_id, r.active) for r in list_units(fleet)] == [(first, "active")],
            30,
            what="rolemeta.service active on the first machine",
        )
        fleet.fleetctl("set-metadata", second, "rolltest=yes")
        fleet.fleetctl("unset-metadata", first, "rolltest")
        fleet.wait_for(
            lambda: [(r.machine_id, r.active) for r in list_units(fleet)] == [(second, "active")],
            30,
            what="rolemeta.service moved to the second machine",
        )
    finally:
        for machine in (first, second):
            fleet.fleetctl("unset-metadata", machine, "rolltest", check=False)


def test_rolling_restart_of_a_global_unit_goes_machine_by_machine(
    fleet: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "everywhere.service").write_text(OLD + "\n[X-Fleet]\nGlobal=true\n")
    fleet.fleetctl("start", str(tmp_path / "everywhere.service"))
    ids = [m.machine_id for m in fleet.machines]
    fleet.wait_for(
        lambda: all(main_pid(fleet, m, "everywhere.service") not in ("", "0") for m in ids),
        30,
        what="the global unit on every machine",
    )
    pids = {m: main_pid(fleet, m, "everywhere.service") for m in ids}
    done = fleet.fleetctl(
        *remote_flags(fleet, tmp_path), "rolling-restart", "--max-parallel", "1", *FAST,
        "everywhere.service", check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for m in ids:  # systemctl restart over SSH on each machine: a new main process each
        assert main_pid(fleet, m, "everywhere.service") != pids[m], m
