"""Real machines through fleet.cluster.nodes: boot, reach, power-cut, reboot, replace, clean up."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from fleet.cluster import nodes
from fleet.errors import FleetError
from tests.functional.cluster import wait_for

STATE = Path("/tmp/fct")
PREFIX, SUBNET, BRIDGE = "fctn", "10.251.40", "fctbr"


@pytest.fixture(scope="module")
def machines() -> Iterator[list[nodes.Node]]:
    started = time.monotonic()
    booted = nodes.boot(2, state_dir=STATE, prefix=PREFIX, subnet=SUBNET, bridge=BRIDGE, timeout=60)
    print(f"\nboot of 2 machines: {time.monotonic() - started:.2f}s")
    try:
        yield booted
    finally:
        started = time.monotonic()
        nodes.teardown(STATE, PREFIX, BRIDGE)
        print(f"\nteardown of 2 machines: {time.monotonic() - started:.2f}s")


def _http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return str(r.read().decode())
    except OSError:
        return None


def _serve_hostname(node: nodes.Node) -> None:
    """python3 http.server as a transient unit in the machine, serving /etc (hostname)."""
    nodes.exec(node, ["systemctl", "stop", "web.service"])
    proc = nodes.exec(
        node,
        [
            "systemd-run",
            "--unit=web",
            "--collect",
            "/usr/bin/python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            node.ip,
            "--directory",
            "/etc",
        ],
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("index", [0, 1], ids=["first", "second"])
def test_machine_runs_its_own_systemd(machines: list[nodes.Node], index: int) -> None:
    node = machines[index]
    assert nodes.system_state(node.bus) in ("running", "degraded")
    assert nodes.exec(node, ["cat", "/etc/machine-id"]).stdout.strip() == node.machine_id
    assert nodes.exec(node, ["hostname"]).stdout.strip() == node.name
    assert (
        (Path("/run/systemd/machines") / node.name).read_text().count(f"LEADER={node.leader_pid}")
    )


def test_machine_ids_are_distinct_and_fleet_shaped(machines: list[nodes.Node]) -> None:
    ids = [m.machine_id for m in machines]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("dbus.service", "active"),
        ("sshd.service", "active"),
        ("getty@tty1.service", "inactive"),
        ("systemd-timesyncd.service", "inactive"),
    ],
    ids=["dbus", "sshd", "no-getty", "no-timesyncd"],
)
def test_small_target_runs_only_what_a_machine_needs(
    machines: list[nodes.Node], unit: str, expected: str
) -> None:
    assert nodes.systemctl(machines[0], "is-active", unit).stdout.strip() == expected


def test_systemctl_dash_m_works_from_the_host(machines: list[nodes.Node]) -> None:
    proc = subprocess.run(
        ["systemctl", "-M", machines[1].name, "show", "-p", "Id", "dbus.service"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert proc.stdout.strip() == "Id=dbus.service", proc.stderr


def test_machines_have_no_default_route(machines: list[nodes.Node]) -> None:
    routes = nodes.exec(machines[0], ["ip", "-4", "route"]).stdout
    assert "default" not in routes
    assert f"{SUBNET}.0/24" in routes


def test_host_and_machines_reach_each_other(machines: list[nodes.Node]) -> None:
    first, second = machines
    for node in machines:
        _serve_hostname(node)
    for node in machines:
        url = f"http://{node.ip}:8080/hostname"
        body: str = wait_for(partial(_http_get, url), 15, what=f"http.server on {node.name}")
        assert body.strip() == node.name
    # machine -> machine by name (every /etc/hosts lists every machine)
    script = (
        "import urllib.request,sys; "
        "print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"
    )
    proc = nodes.exec(
        first, ["/usr/bin/python3", "-c", script, f"http://{second.name}:8080/hostname"]
    )
    assert proc.stdout.strip() == second.name, proc.stderr


def test_ssh_with_the_cluster_key_and_the_machine_host_key(
    machines: list[nodes.Node], tmp_path: Path
) -> None:
    node = machines[0]
    known = tmp_path / "known_hosts"
    known.write_text(f"{node.ip} {node.host_key}\n")
    proc = subprocess.run(
        [
            "ssh",
            "-i",
            str(STATE / nodes.CLUSTER_KEY),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "ConnectTimeout=5",
            f"root@{node.ip}",
            "cat /etc/machine-id",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.stdout.strip() == node.machine_id, proc.stderr


def test_kill_then_start_is_a_reboot_with_the_same_identity(machines: list[nodes.Node]) -> None:
    node = nodes.find(STATE, machines[1].name)
    # a file on its disk survives the power cut (same upper dir)
    nodes.exec(node, ["sh", "-c", "echo survived > /var/tmp/marker"])
    old_leader = node.leader_pid
    nodes.kill(node)
    assert not node.running
    assert (
        not Path(f"/proc/{old_leader}").exists()
        or not Path(f"/proc/{old_leader}/cmdline").read_bytes()
    )
    assert not (Path("/run/systemd/machines") / node.name).exists()
    assert _http_get(f"http://{node.ip}:8080/hostname") is None
    nodes.start(node)
    assert node.running
    assert node.leader_pid not in (0, old_leader)
    assert nodes.system_state(node.bus) in ("running", "degraded")
    assert nodes.exec(node, ["cat", "/etc/machine-id"]).stdout.strip() == machines[1].machine_id
    assert nodes.exec(node, ["cat", "/var/tmp/marker"]).stdout.strip() == "survived"
    assert nodes.load(STATE)[1].leader_pid == node.leader_pid


def test_replace_gives_a_new_identity_on_the_same_address(machines: list[nodes.Node]) -> None:
    old = nodes.find(STATE, machines[1].name)
    new = nodes.replace(old)
    assert (new.name, new.ip) == (machines[1].name, machines[1].ip)
    assert new.machine_id != machines[1].machine_id
    assert new.host_key != machines[1].host_key
    assert nodes.exec(new, ["cat", "/etc/machine-id"]).stdout.strip() == new.machine_id
    assert nodes.exec(new, ["test", "-e", "/var/tmp/marker"]).returncode == 1  # a fresh disk
    assert nodes.find(STATE, new.machine_id).name == new.name


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prefix", "Bad_Prefix", "prefix"),
        ("prefix", "waytoolongprefix", "prefix"),
        ("subnet", "10.251", "subnet"),
        ("subnet", "10.251.300", "subnet"),
        ("bridge", "a-bridge-name-too-long", "bridge"),
        ("state_dir", Path("/tmp/" + "x" * 90), "too long"),
    ],
    ids=["bad-chars", "long-prefix", "two-octets", "octet-300", "long-bridge", "long-state-dir"],
)
def test_layout_is_checked_before_anything_is_created(
    field: str, value: object, message: str
) -> None:
    lay = nodes.Layout(state_dir=Path("/tmp/fcx"), prefix="fcx", subnet="10.251.41", bridge="fcxbr")
    setattr(lay, field, value)
    with pytest.raises(FleetError, match=message):
        lay.check()


def _traces(state: Path, prefix: str, bridge: str) -> list[str]:
    found = []
    mounts = Path("/proc/self/mountinfo").read_text()
    if str(state) + "/" in mounts:
        found.append("mount")
    if any(n.startswith(prefix) for n in os.listdir("/run/netns") if os.path.isdir("/run/netns")):
        found.append("netns")
    if Path(f"/sys/class/net/{bridge}").exists():
        found.append("bridge")
    for root in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"):
        group = Path(root) / nodes.CGROUP_GROUP
        if group.is_dir() and any(p.name.startswith(prefix) for p in group.iterdir()):
            found.append(f"cgroup {root}")
    if any(p.name.startswith(prefix) for p in Path("/run/systemd/machines").glob("*")):
        found.append("machines entry")
    if state.exists():
        found.append("state dir")
    return found


def test_teardown_leaves_nothing_even_after_a_killed_run() -> None:
    state, prefix, bridge = Path("/tmp/fcz"), "fczn", "fczbr"
    kwargs = {"state_dir": state, "prefix": prefix, "subnet": "10.251.42", "bridge": bridge}
    try:
        first = nodes.boot(1, timeout=60, **kwargs)  # type: ignore[arg-type]
        # a run killed before its teardown: processes die, mounts/netns/cgroups/bridge stay
        nodes.kill(first[0])
        assert _traces(state, prefix, bridge)
        second = nodes.boot(1, timeout=60, **kwargs)  # type: ignore[arg-type]
        assert second[0].machine_id != first[0].machine_id
        assert nodes.system_state(second[0].bus) in ("running", "degraded")
    finally:
        started = time.monotonic()
        nodes.teardown(state, prefix, bridge)
        elapsed = time.monotonic() - started
    assert _traces(state, prefix, bridge) == []
    assert elapsed < 10
    nodes.teardown(state, prefix, bridge)  # twice is fine
    assert _traces(state, prefix, bridge) == []
