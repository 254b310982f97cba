"""The functional tests' Cluster helper on real machines, with a stand-in fleetd."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.config import load_config
from tests.functional.cluster import Cluster, ClusterLayout

LAYOUT = ClusterLayout(Path("/tmp/fch"), "fchn", "10.251.44", "fchbr")


@pytest.fixture(scope="module")
def cluster(fake_fleetd: Path) -> Iterator[Cluster]:
    c = Cluster.start(
        2,
        LAYOUT,
        fleetd_path=fake_fleetd,
        metadata=[{"az": "a"}, {"az": "b"}],
        timeout=60,
    )
    print(f"\ncluster helper: {c.timings}")
    try:
        yield c
    finally:
        c.stop()
        print(f"\ncluster helper: {c.timings}")


def _registration(c: Cluster, machine_id: str) -> dict[str, str]:
    out = subprocess.run(
        [
            "etcdctl",
            f"--endpoints={c.endpoint}",
            "get",
            "--print-value-only",
            f"{c.config.key_prefix}machine/{machine_id}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        check=True,
    ).stdout
    return dict(json.loads(out))


def test_every_fleetd_registered_with_its_own_address(cluster: Cluster) -> None:
    machines = cluster.machines
    assert cluster.registered() == {m.machine_id for m in machines}
    for m in machines:
        assert _registration(cluster, m.machine_id)["PublicIP"] == m.ip


@pytest.mark.parametrize(("index", "az"), [(1, "a"), (2, "b")], ids=["first", "second"])
def test_fleet_conf_in_each_machine(cluster: Cluster, index: int, az: str) -> None:
    node = cluster.machine(index)
    text = cluster.exec(node, ["cat", "/etc/fleet/fleet.conf"], check=True).stdout
    conf = node.dir / "conf"
    conf.write_text(text)
    config, _ = load_config(str(conf), {})
    assert config.etcd_servers == (cluster.endpoint,)
    assert config.public_ip == node.ip
    assert dict(config.metadata) == {"az": az, "hostname": node.name}
    assert config.agent_ttl == 3.0


def test_fleetd_gets_the_unix_and_tcp_api_sockets(cluster: Cluster) -> None:
    node = cluster.machine(1)
    for unit in ("fleet.service", "fleet.socket", "fleet-tcp.socket"):
        assert cluster.systemctl(node, "is-active", unit).stdout.strip() == "active", unit
    assert _registration(cluster, node.machine_id)["ListenFDs"] == "2"
    mode = cluster.exec(node, ["stat", "-c", "%a", "/run/fleet.sock"], check=True).stdout
    assert mode.strip() == "660"


def test_killed_machine_leaves_and_restarted_one_comes_back(cluster: Cluster) -> None:
    node = cluster.machine(2)
    cluster.kill(node)
    cluster.wait_for(
        lambda: node.machine_id not in cluster.registered(),
        15,
        what="lease expiry of the killed machine",
    )
    back = cluster.restart(node)
    assert back.machine_id == node.machine_id
    assert node.machine_id in cluster.registered()


def test_fleetd_restarts_after_one_second(cluster: Cluster) -> None:
    node = cluster.machine(1)
    before = cluster.systemctl(node, "show", "-p", "MainPID", "--value", "fleet.service").stdout
    cluster.exec(node, ["systemctl", "kill", "-s", "KILL", "fleet.service"], check=True)

    def new_pid() -> str | None:
        pid = cluster.systemctl(node, "show", "-p", "MainPID", "--value", "fleet.service").stdout
        return pid.strip() if pid.strip() not in ("0", before.strip()) else None

    cluster.wait_for(new_pid, 5, what="fleetd restarted by systemd")


def test_replace_registers_a_new_machine_id(cluster: Cluster) -> None:
    old = cluster.machine(2)
    new = cluster.replace(old)
    assert new.ip == old.ip
    assert new.machine_id != old.machine_id
    cluster.wait_for(
        lambda: cluster.registered() == {cluster.machine(1).machine_id, new.machine_id},
        15,
        what="registrations after replace",
    )


def test_add_machine_joins_and_is_known_by_name(cluster: Cluster) -> None:
    node = cluster.add_machine({"az": "c"})
    assert node.machine_id in cluster.registered()
    assert len(cluster.machines) == 3
    hosts = cluster.exec(1, ["cat", "/etc/hosts"], check=True).stdout
    assert f"{node.ip} {node.name}" in hosts
    config_text = cluster.exec(node, ["cat", "/etc/fleet/fleet.conf"], check=True).stdout
    assert "metadata=az=c,hostname=fchn3" in config_text
