"""fleet's fleetd lifecycle scenarios on real systemd machines (fleet-reference §3.2, §4.1, §5).

Duplicate machine ids, clean shutdown, SIGHUP reconfiguration, and our restart
promise (features.md B8): ``systemctl restart fleet`` resumes the machine's
presence, so its units keep their processes and nothing moves. Each scenario
changes fleetd under the cluster's feet, so each boots a private cluster.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest

from fleet.cluster import nodes
from tests.functional.cluster import VENV_BIN, Cluster
from tests.functional.isolated import (
    API_PORT,
    api_fleetctl,
    journal,
    machine_ids,
    private_clusters,
    unit_property,
)
from tests.functional.unitviews import (
    active_units,
    list_unit_files,
    poll,
    unit_path,
    wait_active,
)

pytestmark = pytest.mark.functional

TTL = 3.0  # the Cluster default agent_ttl ("3s")
ETCD_503 = "fleet server unable to communicate with etcd"


@pytest.fixture
def fresh() -> Iterator[Callable[..., Cluster]]:
    yield from private_clusters("fdm", 220)


def fleet_service(cluster: Cluster, node: nodes.Node) -> tuple[str, str]:
    return (
        unit_property(cluster, node, "fleet.service", "ActiveState"),
        unit_property(cluster, node, "fleet.service", "Result"),
    )


def set_machine_id(cluster: Cluster, node: nodes.Node, machine_id: str) -> None:
    cluster.exec(node, ["sh", "-c", f"echo {machine_id} > /etc/machine-id"], check=True)


def test_detect_machine_id(fresh: Callable[..., Cluster]) -> None:
    """TestDetectMachineId: a machine restarted with another machine's id keeps fleetd
    running but its API answers 503 until that id is free; a new id works at once."""
    cluster = fresh(2)
    m0, m1 = cluster.machines

    set_machine_id(cluster, m1, m0.machine_id)
    cluster.systemctl(m1, "restart", "fleet", check=True)

    def refused() -> str | None:
        proc = api_fleetctl(m1, "list-machines")
        return proc.stderr if proc.returncode == 1 and ETCD_503 in proc.stderr else None

    poll(cluster, refused, bool, "m1's API refusing with 503")
    assert fleet_service(cluster, m1) == ("active", "success")
    assert "already registered" in journal(cluster, m1, "-u", "fleet")

    new_id = uuid.uuid4().hex
    set_machine_id(cluster, m0, new_id)
    cluster.systemctl(m0, "restart", "fleet", check=True)

    def m0_answers() -> list[str] | None:
        proc = api_fleetctl(m0, "list-machines", "--no-legend", "--full", "--fields", "machine")
        return proc.stdout.split() if proc.returncode == 0 else None

    listed = poll(cluster, m0_answers, bool, "m0's API with its new id")
    assert listed is not None
    assert new_id in listed
    assert fleet_service(cluster, m0) == ("active", "success")
    # m0's old presence expires: the id is m1's now, and both machines are listed.
    poll(
        cluster,
        lambda: machine_ids(cluster),
        lambda ids: ids == sorted([new_id, m0.machine_id]),
        "both machines registered",
    )


def test_shutdown(fresh: Callable[..., Cluster]) -> None:
    """TestShutdown: ``systemctl stop fleet`` is a clean exit."""
    cluster = fresh(1)
    (machine,) = cluster.machines
    cluster.systemctl(machine, "stop", "fleet", check=True)
    assert fleet_service(cluster, machine) == ("inactive", "success")
    assert "fleetd stopped" in journal(cluster, machine, "-u", "fleet")


def test_reconfigure_server(fresh: Callable[..., Cluster]) -> None:
    """TestReconfigureServer: SIGHUP reloads the configuration while the API listener
    stays open and keeps answering."""
    cluster = fresh(1)
    (machine,) = cluster.machines
    fleetctl_inside = [str(VENV_BIN / "fleetctl")]  # default endpoint: /var/run/fleet.sock
    cluster.wait_for(
        lambda: cluster.exec(machine, ["test", "-S", "/var/run/fleet.sock"]).returncode == 0,
        what="/var/run/fleet.sock",
    )
    cluster.exec(machine, [*fleetctl_inside, "start", unit_path("hello.service")], check=True)
    cluster.exec(machine, [*fleetctl_inside, "unload", "hello.service"], check=True)
    pid = unit_property(cluster, machine, "fleet.service", "MainPID")

    cluster.systemctl(machine, "kill", "-s", "SIGHUP", "fleet", check=True)

    cluster.wait_for(
        lambda: "Reloading configuration" in journal(cluster, machine, "-u", "fleet"),
        what="the reload in fleetd's journal",
    )
    listing = cluster.exec(machine, [*fleetctl_inside, "list-units", "--no-legend"], check=True)
    assert listing.stdout.strip() == ""  # unloaded: listed nowhere
    assert list_unit_files(cluster)["hello.service"].dstate == "inactive"
    logs = journal(cluster, machine, "-u", "fleet")
    assert "Failed serving HTTP on listener" not in logs
    assert fleet_service(cluster, machine) == ("active", "success")
    assert unit_property(cluster, machine, "fleet.service", "MainPID") == pid
    cluster.fleetctl("destroy", "hello.service")


def test_restart_keeps_units_running_and_in_place(fresh: Callable[..., Cluster]) -> None:
    """B8: ``systemctl restart fleet`` on a machine running a unit resumes the machine's
    presence: the unit keeps its MainPID and does not move, even past agent_ttl.

    The promise holds for a restart shorter than agent_ttl (the lease is not kept
    alive while no fleetd runs): with 3 s, stop + Python start-up of fleetd on a
    loaded 2-core host sometimes took longer, so this cluster runs with 8 s."""
    ttl = 8.0
    cluster = fresh(2, agent_ttl=f"{ttl:g}s")
    cluster.fleetctl("start", unit_path("hello.service"))
    placed = wait_active(cluster, 1)
    (host_id,) = placed["hello.service"]
    host = cluster.machine(host_id)
    pid = unit_property(cluster, host, "hello.service", "MainPID")
    fleetd_pid = unit_property(cluster, host, "fleet.service", "MainPID")

    cluster.systemctl(host, "restart", "fleet", check=True)

    assert unit_property(cluster, host, "fleet.service", "MainPID") != fleetd_pid
    # Long enough for the old presence to expire and the engine to react if the
    # new fleetd had not resumed it: the placement must hold the whole time.
    watch_until = time.monotonic() + ttl + 3
    while time.monotonic() < watch_until:
        assert sorted(machine_ids(cluster)) == sorted(m.machine_id for m in cluster.machines)
        assert active_units(cluster) in ({"hello.service": [host_id]}, {})
        time.sleep(0.25)  # sampling: the placement must hold throughout
    assert wait_active(cluster, 1) == {"hello.service": [host_id]}
    assert unit_property(cluster, host, "hello.service", "MainPID") == pid
    assert "resumed its presence" in journal(cluster, host, "-u", "fleet")
    assert "Stopping hello" not in journal(cluster, host, "_PID=1")
    cluster.fleetctl("destroy", "hello.service")


@pytest.mark.parametrize(
    "cycle",
    [
        pytest.param((("stop", "fleet"), ("start", "fleet")), id="stop-then-start"),
        pytest.param((("restart", "fleet"),), id="restart"),
        pytest.param(
            (("stop", "fleet"), ("start", "fleet"), ("restart", "fleet")), id="stop-start-restart"
        ),
        pytest.param((("kill", "--signal=SIGKILL", "fleet"),), id="crash"),
    ],
)
def test_every_socket_serves_again_after_fleet_comes_back(
    fresh: Callable[..., Cluster], cycle: tuple[tuple[str, ...], ...]
) -> None:
    """After any stop/start/restart of fleet.service, the unix socket, the TCP API and
    /metrics all answer again (fleet-tcp.socket is pulled in by fleet.service and
    ordered before it: a socket cannot start once its service runs)."""
    cluster = fresh(1)
    (machine,) = cluster.machines
    inside = [str(VENV_BIN / "fleetctl"), "list-machines", "--no-legend"]
    metrics = f"http://{machine.ip}:{API_PORT}/metrics"

    def serving() -> bool:
        unix = cluster.exec(machine, inside).returncode == 0
        tcp = api_fleetctl(machine, "list-machines", "--no-legend").returncode == 0
        try:
            with urllib.request.urlopen(metrics, timeout=2) as response:
                scraped = b"fleet_" in response.read()
        except OSError:
            scraped = False
        return unix and tcp and scraped

    cluster.wait_for(serving, what="every fleet socket serving")
    for argv in cycle:
        cluster.systemctl(machine, *argv, check=True)
    cluster.wait_for(serving, what=f"every fleet socket serving after {cycle}")
    for socket in ("fleet.socket", "fleet-tcp.socket"):
        assert unit_property(cluster, machine, socket, "ActiveState") == "active"
