"""Faults of the engine leader and of fleetd itself, on real nspawn machines.

Each test names its fault and asserts what docs/faults.md promises: no unit
lost, none running twice, no restart (MainPIDs unchanged), and the stated
bound on the leadership handover.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet.cluster import nodes
from tests.functional.cluster import Cluster
from tests.functional.isolated import journal, private_clusters, unit_property
from tests.functional.unitviews import active_units, poll, wait_active

UNITS = 3


@pytest.fixture
def fresh() -> Iterator[Callable[..., Cluster]]:
    yield from private_clusters("fen", 140)


def _leader(cluster: Cluster) -> dict[str, object] | None:
    """The ``engine/leader`` record (machine_id, engine_version, lease), if any."""
    key = cluster.config.key_prefix.rstrip("/") + "/engine/leader"
    proc = subprocess.run(
        ["etcdctl", f"--endpoints={cluster.endpoint}", "get", "--print-value-only", key],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=10,
        check=True,
    )
    text = proc.stdout.strip()
    return json.loads(text) if text else None


def _wait_leader(
    cluster: Cluster, done: Callable[[dict[str, object] | None], bool], timeout: float, what: str
) -> tuple[dict[str, object] | None, float]:
    """Poll the leader record quickly; (record, seconds it took)."""
    started = time.monotonic()
    while True:
        record = _leader(cluster)
        if done(record):
            return record, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s, last {record!r}")
        time.sleep(0.02)


def _node(cluster: Cluster, record: dict[str, object] | None) -> nodes.Node:
    assert record is not None
    return cluster.machine(str(record["machine_id"]))


def _start_units(cluster: Cluster, tmp_path: Path, avoid: str = "") -> dict[str, str]:
    """UNITS services (pinned off ``avoid`` if given); -> unit -> MainPID."""
    others = [m.machine_id for m in cluster.machines if m.machine_id != avoid]
    paths = []
    for i in range(UNITS):
        pin = f"\n[X-Fleet]\nMachineID={others[i % len(others)]}\n" if avoid else ""
        path = tmp_path / f"app{i}.service"
        path.write_text(f"[Unit]\nDescription=app {i}\n\n[Service]\nExecStart=/bin/sleep 1d\n{pin}")
        paths.append(str(path))
    cluster.fleetctl("start", *paths)
    placed = wait_active(cluster, UNITS)
    return _pids(cluster, placed)


def _pids(cluster: Cluster, placed: dict[str, list[str]]) -> dict[str, str]:
    return {
        unit: unit_property(cluster, cluster.machine(machines[0]), unit, "MainPID")
        for unit, machines in placed.items()
    }


def _assert_units_untouched(cluster: Cluster, pids: dict[str, str]) -> None:
    """0 lost, 0 twice (systemd's view in every machine), 0 restarts."""
    placed = wait_active(cluster, UNITS)
    assert all(len(machines) == 1 for machines in placed.values()), placed
    for node in cluster.machines:
        for unit in pids:
            state = unit_property(cluster, node, unit, "ActiveState")
            assert state == "active" if node.machine_id in placed[unit] else state != "active"
    assert _pids(cluster, placed) == pids


def test_engine_leader_sighup_and_clean_stop_hand_over(
    fresh: Callable[..., Cluster], tmp_path: Path
) -> None:
    """SIGHUP, then ``systemctl stop fleet``, of the leader: a new term within 1 s each."""
    cluster = fresh(3)
    pids = _start_units(cluster, tmp_path)
    first, _ = _wait_leader(cluster, bool, 15, "a leader")
    cluster.systemctl(_node(cluster, first), "kill", "-s", "SIGHUP", "fleet", check=True)
    second, took = _wait_leader(
        cluster, lambda r: r is not None and r != first, 5, "a new term after SIGHUP"
    )
    print(f"SIGHUP handover: {took:.2f}s")
    assert took < 1.0, f"SIGHUP handover took {took:.2f}s"
    stopping = _node(cluster, second)
    stop = threading.Thread(target=cluster.systemctl, args=(stopping, "stop", "fleet"))
    stop.start()
    try:
        _third, took = _wait_leader(
            cluster,
            lambda r: r is not None and r["machine_id"] != stopping.machine_id,
            5,
            "another machine leading after a clean stop",
        )
    finally:
        stop.join(timeout=30)
    # Includes the start-up of the command that enters the machine.
    print(f"clean-stop handover: {took:.2f}s")
    assert took < 1.0, f"clean-stop handover took {took:.2f}s"
    cluster.systemctl(stopping, "start", "fleet", check=True)
    cluster.wait_registered(3)
    _assert_units_untouched(cluster, pids)


def test_engine_leader_sigkilled(fresh: Callable[..., Cluster], tmp_path: Path) -> None:
    """SIGKILL of the leader's fleetd: another term within the lease TTL (10 s) + 2 s."""
    cluster = fresh(3)
    pids = _start_units(cluster, tmp_path)
    first, _ = _wait_leader(cluster, bool, 15, "a leader")
    cluster.systemctl(_node(cluster, first), "kill", "-s", "SIGKILL", "fleet", check=True)
    _, took = _wait_leader(cluster, lambda r: r is not None and r != first, 15, "a new term")
    print(f"new term after SIGKILL: {took:.2f}s")
    assert took < 12.0
    _assert_units_untouched(cluster, pids)


def test_engine_leader_paused_past_its_lease(fresh: Callable[..., Cluster], tmp_path: Path) -> None:
    """SIGSTOP of the leader's fleetd past its lease, then SIGCONT: another machine
    leads, the paused one's term is over (its writes fenced), nothing moves."""
    cluster = fresh(3)
    first, _ = _wait_leader(cluster, bool, 15, "a leader")
    paused = _node(cluster, first)
    # Units off the paused machine: its agent's presence lapses too (partition policy).
    pids = _start_units(cluster, tmp_path, avoid=paused.machine_id)
    cluster.systemctl(paused, "kill", "-s", "SIGSTOP", "fleet", check=True)
    try:
        second, took = _wait_leader(
            cluster,
            lambda r: r is not None and r["machine_id"] != paused.machine_id,
            15,
            "another machine leading",
        )
        print(f"new term after SIGSTOP: {took:.2f}s")
        assert took < 12.0
    finally:
        cluster.systemctl(paused, "kill", "-s", "SIGCONT", "fleet", check=True)
    poll(
        cluster,
        lambda: journal(cluster, paused, "-u", "fleet"),
        lambda text: "leadership lost" in text or ("lease" in text and "lost" in text),
        "the resumed leader noticing its term is over",
    )
    assert _leader(cluster) == second
    _assert_units_untouched(cluster, pids)
    assert unit_property(cluster, paused, "fleet.service", "ActiveState") == "active"


def _set_engine_version(cluster: Cluster, node: nodes.Node, version: int) -> None:
    cluster.exec(
        node,
        ["sh", "-c", f"echo engine_version_override={version} >> /etc/fleet/fleet.conf"],
        check=True,
    )
    cluster.systemctl(node, "restart", "fleet", check=True)


def test_mixed_engine_versions_lead_newest(fresh: Callable[..., Cluster], tmp_path: Path) -> None:
    """A rolling upgrade: the first upgraded engine leads at once; with it stopped
    no older engine leads; a second upgraded engine takes over."""
    cluster = fresh(3)
    m0, m1, _ = cluster.machines
    # m0 is upgraded and then stopped for longer than agent_ttl: units off it.
    pids = _start_units(cluster, tmp_path, avoid=m0.machine_id)
    _set_engine_version(cluster, m0, 2)
    record, _took = _wait_leader(
        cluster,
        lambda r: r is not None and r.get("engine_version") == 2,
        10,
        "the newer engine leading",
    )
    assert _node(cluster, record).machine_id == m0.machine_id
    cluster.systemctl(m0, "stop", "fleet", check=True)
    # Older engines stay standbys: for three lease TTLs nobody leads.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert _leader(cluster) is None
        time.sleep(0.2)
    _set_engine_version(cluster, m1, 2)
    record, _ = _wait_leader(cluster, bool, 10, "the second upgraded engine leading")
    assert record is not None
    assert record["machine_id"] == m1.machine_id
    assert record["engine_version"] == 2
    cluster.systemctl(m0, "start", "fleet", check=True)
    cluster.wait_registered(3)
    _assert_units_untouched(cluster, pids)
    assert active_units(cluster).keys() == pids.keys()


def test_fleetd_sigterm_while_etcd_hangs(fresh: Callable[..., Cluster]) -> None:
    """etcd accepting TCP but never answering: SIGHUP is honoured and SIGTERM stops
    fleetd within 5 s."""
    cluster = fresh(1)
    (node,) = cluster.machines
    cluster.exec(
        node,
        [
            "systemd-run",
            "--unit=blackhole",
            "python3",
            "-c",
            "import socket,time\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('127.0.0.1', 2399)); s.listen(64)\n"
            "held=[]\n"
            "while True: held.append(s.accept())\n",
        ],
        check=True,
    )
    cluster.exec(
        node,
        ["sh", "-c", "echo etcd_servers=http://127.0.0.1:2399 >> /etc/fleet/fleet.conf"],
        check=True,
    )
    cluster.systemctl(node, "kill", "-s", "SIGHUP", "fleet", check=True)
    poll(
        cluster,
        lambda: journal(cluster, node, "-u", "fleet"),
        lambda text: "Reloading configuration" in text and "2399" in text,
        "the reload onto the hanging etcd",
    )
    time.sleep(2)  # fleetd is now waiting for an etcd that never answers
    started = time.monotonic()
    cluster.systemctl(node, "stop", "fleet", check=True)
    took = time.monotonic() - started
    print(f"stop while etcd hangs: {took:.2f}s")
    assert took < 5.0, f"systemctl stop fleet took {took:.1f}s"
    assert unit_property(cluster, node, "fleet.service", "Result") == "success"
    assert "fleetd stopped" in journal(cluster, node, "-u", "fleet")
