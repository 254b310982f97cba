"""What fleet's functional harness read off a cluster, for the unit and scheduling scenarios.

fleet's Go harness parsed ``list-units --no-legend --full --fields
unit,active,machine`` and ``list-unit-files --no-legend --full --fields
unit,dstate,state`` and polled them (``WaitForState``: every 250 ms, up to
15 s). This module does the same on top of :class:`~tests.functional.cluster.Cluster`
and adds systemd's own view from inside the machines, so a scenario can check
that what fleet reports is what systemd runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fleet.cluster import nodes
from fleet.errors import Timeout
from tests.functional.cluster import Cluster

UNITS = Path(__file__).resolve().parents[1] / "fixtures" / "units"
T = TypeVar("T")
WAIT = 15.0  # fleet's WaitForState deadline


def unit_path(name: str) -> str:
    """Absolute path of a fixture unit (fleetctl takes files by path)."""
    return str(UNITS / name)


@dataclass(frozen=True)
class UnitRow:
    """One ``list-units`` row: a unit's systemd state on one machine."""

    unit: str
    active: str
    machine_id: str


@dataclass(frozen=True)
class UnitFileRow:
    """One ``list-unit-files`` row: a unit's desired and current fleet state."""

    unit: str
    dstate: str
    state: str


def _rows(text: str, width: int) -> list[list[str]]:
    rows = [line.split() for line in text.splitlines() if line.strip()]
    for row in rows:
        assert len(row) == width, f"unexpected fleetctl row {row!r}"
    return rows


def list_units(cluster: Cluster) -> list[UnitRow]:
    out = cluster.fleetctl(
        "list-units", "--no-legend", "--full", "--fields", "unit,active,machine"
    ).stdout
    # MACHINE is ``<full id>/<ip>`` with --full; the id is what we compare.
    return [UnitRow(u, a, m.split("/")[0]) for u, a, m in _rows(out, 3)]


def list_unit_files(cluster: Cluster) -> dict[str, UnitFileRow]:
    out = cluster.fleetctl(
        "list-unit-files", "--no-legend", "--full", "--fields", "unit,dstate,state"
    ).stdout
    return {u: UnitFileRow(u, d, s) for u, d, s in _rows(out, 3)}


def active_units(cluster: Cluster) -> dict[str, list[str]]:
    """unit -> machine ids where fleet reports it ``active`` (global units: several)."""
    placed: dict[str, list[str]] = defaultdict(list)
    for row in list_units(cluster):
        if row.active == "active":
            placed[row.unit].append(row.machine_id)
    return dict(placed)


def active_count(placed: dict[str, list[str]]) -> int:
    return sum(len(machines) for machines in placed.values())


def poll(
    cluster: Cluster,
    read: Callable[[], T],
    done: Callable[[T], bool],
    what: str,
    timeout: float = WAIT,
) -> T:
    """Read every 250 ms until ``done(value)``; on timeout fail showing the last value."""
    seen: list[T] = []

    def reached() -> bool:
        seen[:] = [read()]
        return done(seen[0])

    try:
        cluster.wait_for(reached, timeout, what=what)
    except Timeout as exc:
        raise AssertionError(f"{what}: not within {timeout:.0f}s, last {seen[0]!r}") from exc
    return seen[0]


def wait_active(cluster: Cluster, count: int, timeout: float = WAIT) -> dict[str, list[str]]:
    """fleet's WaitForNActiveUnits: until exactly ``count`` (unit, machine) rows are active."""
    return poll(
        cluster,
        lambda: active_units(cluster),
        lambda placed: active_count(placed) == count,
        f"{count} active units",
        timeout,
    )


def wait_unit_files(cluster: Cluster, count: int, timeout: float = WAIT) -> dict[str, UnitFileRow]:
    """Until ``list-unit-files`` lists exactly ``count`` units."""
    return poll(
        cluster,
        lambda: list_unit_files(cluster),
        lambda files: len(files) == count,
        f"{count} unit files",
        timeout,
    )


def wait_listed(cluster: Cluster, count: int, timeout: float = WAIT) -> list[UnitRow]:
    """Until ``list-units`` has exactly ``count`` rows, whatever their state."""
    return poll(
        cluster,
        lambda: list_units(cluster),
        lambda rows: len(rows) == count,
        f"{count} list-units rows",
        timeout,
    )


def remote_flags(cluster: Cluster, tmp_path: Path) -> list[str]:
    """fleetctl flags for commands that ssh into machines (status, restart of globals)."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(cluster.known_hosts())
    return [f"--ssh-identity-file={cluster.ssh_key}", f"--known-hosts-file={known_hosts}"]


def node_of(cluster: Cluster, machine_id: str) -> nodes.Node:
    return cluster.machine(machine_id)


def systemd_state(cluster: Cluster, machine_id: str, unit: str) -> str:
    """systemd's ActiveState of ``unit`` inside the machine fleet says runs it."""
    proc = cluster.systemctl(machine_id, "show", "-p", "ActiveState", "--value", unit)
    return proc.stdout.strip()


def assert_systemd_runs(cluster: Cluster, placed: dict[str, list[str]]) -> None:
    """Every (unit, machine) fleet calls active is active in that machine's systemd."""
    for unit, machines in placed.items():
        for machine_id in machines:
            proc = cluster.systemctl(machine_id, "is-active", unit)
            assert proc.stdout.strip() == "active", (
                f"fleet says {unit} is active on {node_of(cluster, machine_id).name}, "
                f"systemd there says {proc.stdout.strip()!r}"
            )


def destroy_all(cluster: Cluster) -> None:
    """Destroy every unit and wait until no agent reports any (the session cluster is shared)."""
    names = sorted(list_unit_files(cluster))
    if names:
        cluster.fleetctl("destroy", *names)
    wait_unit_files(cluster, 0)
    wait_listed(cluster, 0, timeout=30)
