"""fleet's unit-lifecycle scenarios (``functional/unit_action_test.go``) on real machines.

Each test is one of fleet's acceptance tests, named after it: submit, load,
start, stop, unload, destroy, ``--replace``, restart and cat of units, checked
the way fleet's harness did (``list-units`` / ``list-unit-files`` parsed and
polled) and against systemd's own view inside the machines. They share the
session's 3-machine cluster and destroy every unit they made.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.functional.cluster import Cluster
from tests.functional.unitviews import (
    UNITS,
    active_units,
    assert_systemd_runs,
    destroy_all,
    list_unit_files,
    list_units,
    poll,
    remote_flags,
    systemd_state,
    unit_path,
    wait_active,
    wait_listed,
    wait_unit_files,
)

pytestmark = pytest.mark.functional


def instances(count: int, directory: Path = UNITS) -> list[str]:
    """``hello@1.service`` .. ``hello@N.service`` next to the template in ``directory``."""
    return [str(directory / f"hello@{i}.service") for i in range(1, count + 1)]


def names(paths: list[str]) -> list[str]:
    return [Path(p).name for p in paths]


def main_pids(cluster: Cluster, placed: dict[str, list[str]]) -> dict[str, str]:
    """unit -> systemd's MainPID for it on the machine fleet placed it on."""
    pids = {}
    for unit, (machine_id,) in placed.items():
        proc = cluster.systemctl(machine_id, "show", "-p", "MainPID", "--value", unit)
        pids[unit] = proc.stdout.strip()
        assert pids[unit] not in ("", "0"), f"{unit} has no main process"
    return pids


def test_unit_runnable(fleet: Cluster) -> None:
    """TestUnitRunnable: a started unit is the cluster's one active unit."""
    fleet.fleetctl("start", unit_path("hello.service"))
    placed = wait_active(fleet, 1)
    assert list(placed) == ["hello.service"]
    assert_systemd_runs(fleet, placed)


def test_unit_submit(fleet: Cluster) -> None:
    """TestUnitSubmit: instances submitted from the template on disk, destroyed, again."""
    units = instances(9)
    for _ in range(2):
        for unit in units:
            fleet.fleetctl("submit", unit)
        files = wait_unit_files(fleet, 9)
        assert sorted(files) == sorted(names(units))
        assert {(f.dstate, f.state) for f in files.values()} == {("inactive", "inactive")}
        assert list_units(fleet) == []  # submitted units are on no machine
        for name in names(units):
            fleet.fleetctl("destroy", name)
        wait_unit_files(fleet, 0)


def test_unit_load(fleet: Cluster) -> None:
    """TestUnitLoad: loaded units show in list-units (loaded, not running); unloaded, gone."""
    units = instances(6)
    for _ in range(2):
        for unit in units:
            fleet.fleetctl("load", unit)
        rows = wait_listed(fleet, 6)
        assert {row.unit for row in rows} == set(names(units))
        assert {row.active for row in rows} == {"inactive"}
        for row in rows:
            proc = fleet.systemctl(row.machine_id, "show", "-p", "LoadState", "--value", row.unit)
            assert proc.stdout.strip() == "loaded", row
        assert {f.state for f in list_unit_files(fleet).values()} == {"loaded"}
        for name in names(units):
            fleet.fleetctl("unload", name)
        wait_listed(fleet, 0)
        assert {f.state for f in list_unit_files(fleet).values()} == {"inactive"}


def test_unit_start(fleet: Cluster) -> None:
    """TestUnitStart: started units run; stopped ones stay loaded but inactive; again."""
    units = instances(3)
    for _ in range(2):
        for unit in units:
            fleet.fleetctl("start", unit)
        placed = wait_active(fleet, 3)
        assert sorted(placed) == sorted(names(units))
        assert_systemd_runs(fleet, placed)
        for name in names(units):
            fleet.fleetctl("stop", name)
        wait_active(fleet, 0)
        assert len(list_units(fleet)) == 3  # still loaded on their machines
        for unit, (machine_id,) in placed.items():
            assert systemd_state(fleet, machine_id, unit) == "inactive"


def _replace_scenario(fleet: Cluster, tmp_path: Path, command: str, count: int) -> None:
    """fleet's Test<Cmd>Replace: N units via ``command``, then each replaced by a
    copy whose ``sleep 1`` became ``sleep 2``; counts hold, content changes."""
    units = instances(count)
    for unit in units:
        fleet.fleetctl(command, unit)
    expect = {"submit": "inactive", "load": "loaded", "start": "launched"}[command]
    poll(
        fleet,
        lambda: list_unit_files(fleet),
        lambda files: len(files) == count and {f.state for f in files.values()} == {expect},
        f"{count} units {expect}",
    )
    template = (UNITS / "hello@.service").read_text()
    assert "sleep 1" in template
    for name in names(units):
        before = fleet.fleetctl("cat", name).stdout
        changed = tmp_path / name
        changed.write_text(template.replace("sleep 1", "sleep 2"))
        fleet.fleetctl(command, "--replace", str(changed))
        after = fleet.fleetctl("cat", name).stdout
        assert after != before
        assert "sleep 2" in after
        assert "sleep 1" not in after
    files = poll(
        fleet,
        lambda: list_unit_files(fleet),
        lambda files: len(files) == count and {f.state for f in files.values()} == {expect},
        f"{count} replaced units {expect}",
    )
    assert sorted(files) == sorted(names(units))
    if command == "start":
        placed = wait_active(fleet, count)
        assert_systemd_runs(fleet, placed)
        for unit, (machine_id,) in placed.items():
            # systemd runs the new content, not just fleet's registry.
            proc = fleet.systemctl(machine_id, "show", "-p", "ExecStart", "--value", unit)
            assert "sleep 2" in proc.stdout, proc.stdout
    destroy_all(fleet)


def test_unit_submit_replace(fleet: Cluster, tmp_path: Path) -> None:
    """TestUnitSubmitReplace: ``submit --replace`` rewrites 9 submitted units."""
    _replace_scenario(fleet, tmp_path, "submit", 9)


def test_unit_load_replace(fleet: Cluster, tmp_path: Path) -> None:
    """TestUnitLoadReplace: ``load --replace`` rewrites 6 loaded units."""
    _replace_scenario(fleet, tmp_path, "load", 6)


def test_unit_start_replace(fleet: Cluster, tmp_path: Path) -> None:
    """TestUnitStartReplace: ``start --replace`` rewrites 3 running units, which restart."""
    _replace_scenario(fleet, tmp_path, "start", 3)


def test_unit_restart(fleet: Cluster) -> None:
    """TestUnitRestart: restart of launched units restarts them; of loaded units starts them."""
    units = instances(3)
    unit_names = names(units)
    fleet.fleetctl("start", *units)
    placed = wait_active(fleet, 3)
    before = main_pids(fleet, placed)
    fleet.fleetctl("restart", *unit_names)
    placed = wait_active(fleet, 3)
    assert_systemd_runs(fleet, placed)
    after = main_pids(fleet, placed)
    assert all(after[u] != before[u] for u in unit_names), (before, after)
    for _ in range(2):
        fleet.fleetctl("stop", *unit_names)
        wait_active(fleet, 0)
        fleet.fleetctl("restart", *unit_names)
        placed = wait_active(fleet, 3)
        assert sorted(placed) == sorted(unit_names)
        assert_systemd_runs(fleet, placed)
    fleet.fleetctl("stop", *unit_names)
    wait_active(fleet, 0)


def test_unit_cat(fleet: Cluster) -> None:
    """TestUnitCat: ``cat`` prints the submitted unit (trimmed, it is the fixture)."""
    fleet.fleetctl("submit", unit_path("hello.service"))
    out = fleet.fleetctl("cat", "hello.service").stdout
    assert out.strip() == (UNITS / "hello.service").read_text().strip()
    missing = fleet.fleetctl("cat", "nosuch.service", check=False)
    assert missing.returncode == 1
    assert "Unit nosuch.service not found" in missing.stderr


def test_unit_status(fleet: Cluster, tmp_path: Path) -> None:
    """TestUnitStatus: a loaded unit is loaded in its machine's systemd, as
    ``systemctl status`` there and ``fleetctl status`` (over ssh) both say."""
    fleet.fleetctl("load", unit_path("hello.service"))
    (row,) = wait_listed(fleet, 1)
    assert row.unit == "hello.service"
    status = fleet.systemctl(row.machine_id, "status", "-l", "hello.service")
    assert "Loaded: loaded" in status.stdout, status.stdout
    assert "Active: inactive" in status.stdout, status.stdout
    remote = fleet.fleetctl(*remote_flags(fleet, tmp_path), "status", "hello.service", check=False)
    # systemctl status exits 3 for an inactive unit; fleetctl passes that on.
    assert remote.returncode == 3, remote
    assert "Loaded: loaded" in remote.stdout, remote
    # Only the machine fleet chose has it.
    for machine in fleet.machines:
        if machine.machine_id != row.machine_id:
            other = fleet.systemctl(machine, "show", "-p", "LoadState", "--value", "hello.service")
            assert other.stdout.strip() == "not-found"


def test_list_unit_files_order(fleet: Cluster) -> None:
    """TestListUnitFilesOrder: list-unit-files is sorted by unit name, whatever the
    submission order."""
    wanted = [f"hello@{i:02d}.service" for i in range(1, 21)]
    shuffled = list(wanted)
    random.Random(20).shuffle(shuffled)
    assert shuffled != wanted
    for name in shuffled:
        fleet.fleetctl("submit", str(UNITS / name))
    out = fleet.fleetctl("list-unit-files", "--no-legend", "--fields", "unit").stdout
    assert out.split() == wanted
    assert active_units(fleet) == {}
