"""``fleet-cluster up --etcd-members 3`` and ``fleet-cluster etcd ...`` as a user runs them.

The venv's ``fleet-cluster`` (what ``scripts/demo.sh`` installs) boots one
machine beside three etcd members, prints ``env`` lines naming every member,
survives ``etcd kill`` of the leader (fleetctl from those lines still works and
the machine stays registered), brings the member back with ``etcd restart``,
and ``down`` leaves no etcd process behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.cluster.registration import registered_machines

BIN = Path(sys.executable).parent
STATE = Path("/tmp/fet7")
LAYOUT = ("--prefix", "fet7n", "--subnet", "10.251.137", "--bridge", "fet7br")


def run(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET")}
    proc = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "NO_COLOR": "1"},
        check=False,
    )
    if check:
        assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr}"
    return proc


def cluster_cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("fleet-cluster", "--state-dir", str(STATE), *args, check=check)


def etcd_pids() -> set[int]:
    """etcd processes whose data dir is in this test's state dir."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"etcd") and any(str(STATE).encode() in a for a in argv):
            pids.add(int(entry.name))
    return pids


@pytest.fixture
def three_members() -> Iterator[dict[str, str]]:
    try:
        up = cluster_cmd("up", "-n", "1", "--etcd-members", "3", "--etcd-port", "0", *LAYOUT)
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        yield exports
    finally:
        cluster_cmd("down", "--prefix", "fet7n", "--bridge", "fet7br", check=False)


def test_up_with_three_etcd_members_survives_a_leader_kill(
    three_members: dict[str, str],
) -> None:
    endpoints = three_members["FLEETCTL_ENDPOINT"].split(",")
    assert len(endpoints) == 3
    assert len(etcd_pids()) == 3
    status = cluster_cmd("status").stdout
    assert sorted(line.split()[3] for line in status.splitlines() if line.startswith("etcd ")) == [
        "follower",
        "follower",
        "leader",
    ], status
    fleetctl = ("fleetctl", "--driver=etcd", f"--endpoint={three_members['FLEETCTL_ENDPOINT']}")
    (machine,) = run(*fleetctl, "list-machines", "--no-legend", "--full").stdout.split()[:1]

    leader = cluster_cmd("etcd", "leader").stdout.strip()
    cluster_cmd("etcd", "kill", leader)
    assert len(etcd_pids()) == 2
    assert cluster_cmd("etcd", "kill", leader, check=False).returncode == 1
    listed = run(*fleetctl, "list-machines", "--no-legend", "--full").stdout
    assert listed.split()[:1] == [machine]
    until = time.monotonic() + 6  # past agent_ttl (5 s): the machine never left
    while time.monotonic() < until:
        assert registered_machines(three_members["FLEETCTL_ENDPOINT"]) == {machine}
        time.sleep(0.5)  # sampling: the registration must hold throughout

    cluster_cmd("etcd", "restart", leader)
    assert len(etcd_pids()) == 3
    unknown = cluster_cmd("etcd", "pause", "m9", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "fleet-cluster: no etcd member 'm9': the members are m1, m2, m3"
    )
    target = next(
        n for n in ("m1", "m2", "m3") if n != cluster_cmd("etcd", "leader").stdout.strip()
    )
    cluster_cmd("etcd", "move-leader", target)
    assert cluster_cmd("etcd", "leader").stdout.strip() == target

    cluster_cmd("down", "--prefix", "fet7n", "--bridge", "fet7br")
    assert etcd_pids() == set()
