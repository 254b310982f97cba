"""fleet's cluster-dynamics scenarios on real systemd machines (fleet-reference §5).

Machines join, leave, are replaced, stop their fleetd or lose etcd while
units run on them. Each scenario asserts what fleet's harness asserted on
``fleetctl``'s output and, in addition, on systemd's own view inside the
machines. Every scenario changes machines, so each boots a private cluster
(:mod:`tests.functional.isolated`).

Our shutdown default differs from fleet's on purpose (features.md B8,
docs/agent.md "Restarts"): ``systemctl stop fleet`` leaves the machine's
units running and lets its presence expire after ``agent_ttl``; fleet's purge
is ``shutdown_stops_units=true``. ``test_node_shutdown`` checks both.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from fleet.cluster import nodes
from tests.functional.cluster import Cluster
from tests.functional.isolated import (
    journal,
    machine_ids,
    private_clusters,
    unit_property,
)
from tests.functional.unitviews import (
    active_units,
    assert_systemd_runs,
    list_unit_files,
    list_units,
    poll,
    unit_path,
    wait_active,
    wait_listed,
)

pytestmark = pytest.mark.functional

CONFLICTS = [f"conflict.{i}.service" for i in range(3)]
TTL = 3.0  # the Cluster default agent_ttl ("3s"), as in fleet's harness


@pytest.fixture
def fresh() -> Iterator[Callable[..., Cluster]]:
    yield from private_clusters("fdy", 210)


def one_machine_each(placed: dict[str, list[str]]) -> dict[str, str]:
    """unit -> its only machine; fails if a unit runs on several or two share one."""
    assert all(len(machines) == 1 for machines in placed.values()), placed
    where = {unit: machines[0] for unit, machines in placed.items()}
    assert len(set(where.values())) == len(where), f"units share a machine: {where}"
    return where


def start_conflicts(cluster: Cluster) -> dict[str, str]:
    cluster.fleetctl("start", *(unit_path(name) for name in CONFLICTS))
    placed = wait_active(cluster, 3)
    assert sorted(placed) == CONFLICTS
    assert_systemd_runs(cluster, placed)
    return one_machine_each(placed)


def test_dynamic_cluster_new_member_unit_migration(fresh: Callable[..., Cluster]) -> None:
    """TestDynamicClusterNewMemberUnitMigration: stopping fleet on conflict.1's host moves
    conflict.1, and only it, to the machine that had nothing."""
    cluster = fresh(4)
    everyone = {m.machine_id for m in cluster.machines}
    before = start_conflicts(cluster)
    assert len(list_units(cluster)) == 3
    (empty,) = everyone - set(before.values())
    host = before["conflict.1.service"]

    cluster.systemctl(host, "stop", "fleet", check=True)

    poll(
        cluster,
        lambda: machine_ids(cluster),
        lambda ids: ids == sorted(everyone - {host}),
        "3 machines left",
    )
    after = one_machine_each(
        poll(
            cluster,
            lambda: active_units(cluster),
            lambda placed: (
                placed.get("conflict.1.service") == [empty] and sum(map(len, placed.values())) == 3
            ),
            "conflict.1 active on the empty machine",
        )
    )
    assert after == {**before, "conflict.1.service": empty}
    assert_systemd_runs(cluster, {unit: [m] for unit, m in after.items()})


def test_dynamic_cluster_member_reboot(fresh: Callable[..., Cluster]) -> None:
    """TestDynamicClusterMemberReboot: replacing a member (new machine id) migrates
    exactly its unit, onto the new member."""
    cluster = fresh(3)
    before = start_conflicts(cluster)
    old = cluster.machine(3)

    new = cluster.replace(3)

    assert new.machine_id != old.machine_id
    live = {m.machine_id for m in cluster.machines}
    after = one_machine_each(
        poll(
            cluster,
            lambda: active_units(cluster),
            lambda placed: (
                sum(map(len, placed.values())) == 3
                and all(m in live for ms in placed.values() for m in ms)
            ),
            "3 active units on the current members",
        )
    )
    moved = sorted(unit for unit in CONFLICTS if after[unit] != before[unit])
    assert len(moved) == 1, f"expected exactly 1 migration: {before} -> {after}"
    assert before[moved[0]] == old.machine_id
    assert after[moved[0]] == new.machine_id
    assert_systemd_runs(cluster, {unit: [m] for unit, m in after.items()})


@pytest.mark.parametrize(
    "stops_units",
    [
        pytest.param(False, id="default-units-keep-running"),
        pytest.param(True, id="shutdown_stops_units"),
    ],
)
def test_node_shutdown(fresh: Callable[..., Cluster], stops_units: bool) -> None:
    """TestNodeShutdown: after ``systemctl stop fleet`` on m0 the other member sees one
    machine and no active unit. With fleet's purge (``shutdown_stops_units``) the pinned
    unit is stopped on m0; with our default (B8) it keeps running there, untouched."""
    extra = {"shutdown_stops_units": "true"} if stops_units else {}
    cluster = fresh(1, extra_config=extra)
    (m0,) = cluster.machines
    unit = f"pin@{m0.machine_id}.service"
    cluster.fleetctl("start", unit_path(unit))
    assert wait_active(cluster, 1) == {unit: [m0.machine_id]}
    pid = unit_property(cluster, m0, unit, "MainPID")
    m1 = cluster.add_machine()

    cluster.systemctl(m0, "stop", "fleet", check=True)

    # What m1's API tells a client: only m1 is left, and nothing runs.
    poll(
        cluster,
        lambda: machine_ids(cluster, via=m1),
        lambda ids: ids == [m1.machine_id],
        "m1 alone in the cluster",
    )
    wait_listed(cluster, 0)
    assert list_unit_files(cluster)[unit].dstate == "launched"
    if stops_units:
        status = cluster.systemctl(m0, "status", unit).stdout
        assert "Active: inactive" in status or "could not be found" in status or not status
        assert unit_property(cluster, m0, unit, "ActiveState") == "inactive"
    else:
        assert cluster.systemctl(m0, "is-active", unit).stdout.strip() == "active"
        assert unit_property(cluster, m0, unit, "MainPID") == pid
    cluster.fleetctl("destroy", unit)


LOSS_UNITS = {
    f"{kind}@{state}.service": state
    for kind in ("single", "global")
    for state in ("inactive", "loaded", "launched")
}


def fleet_view(cluster: Cluster) -> tuple[dict[str, str], dict[str, str]]:
    """(unit -> desired state from list-unit-files, unit -> ACTIVE from list-units)."""
    files = {name: row.dstate for name, row in list_unit_files(cluster).items()}
    units = {row.unit: row.active for row in list_units(cluster)}
    return files, units


EXPECTED_VIEW = (
    dict(LOSS_UNITS),
    {
        name: "active" if state == "launched" else "inactive"
        for name, state in LOSS_UNITS.items()
        if state != "inactive"
    },
)


def cut_etcd(cluster: Cluster, node: nodes.Node, cut: bool) -> None:
    """REJECT the machine's TCP to etcd's port, inside the machine's network namespace."""
    port = cluster.endpoint.rsplit(":", 1)[1]
    rule = ["OUTPUT", "-p", "tcp", "--dport", port, "-j", "REJECT"]
    argv = ["ip", "netns", "exec", node.netns, "iptables", "-A" if cut else "-D", *rule]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def test_single_node_connectivity_loss(fresh: Callable[..., Cluster]) -> None:
    """TestSingleNodeConnectivityLoss: etcd unreachable for ttl + 5 s + 2 s stops nothing;
    afterwards fleet reports the same states (B7)."""
    cluster = fresh(1)
    (machine,) = cluster.machines
    for name, state in LOSS_UNITS.items():
        command = {"inactive": ["submit"], "loaded": ["load", "--no-block"]}.get(
            state, ["start", "--no-block"]
        )
        cluster.fleetctl(*command, unit_path(name))
    poll(cluster, lambda: fleet_view(cluster), lambda v: v == EXPECTED_VIEW, "states before")
    live = [name for name, state in LOSS_UNITS.items() if state != "inactive"]
    launched = [name for name, state in LOSS_UNITS.items() if state == "launched"]
    pids = {name: unit_property(cluster, machine, name, "MainPID") for name in launched}

    cut_etcd(cluster, machine, cut=True)
    try:
        # The whole outage, checked every second: fleetd's view of etcd is gone,
        # systemd's units are not.
        assert cluster.fleetctl("list-machines", "--no-legend").stdout.strip()  # host still sees
        outage_end = time.monotonic() + TTL + 5 + 2
        while time.monotonic() < outage_end:
            for name in live:
                enabled = cluster.systemctl(machine, "is-enabled", name).stdout.strip()
                assert enabled == "linked-runtime", f"{name} is {enabled} during the outage"
            listing = cluster.systemctl(
                machine, "list-units", "--no-legend", "--plain", *launched
            ).stdout
            for name in launched:
                assert f"{name} loaded active running" in " ".join(listing.split()), listing
            time.sleep(1.0)  # sampling: the units must keep running throughout the outage
    finally:
        cut_etcd(cluster, machine, cut=False)

    poll(
        cluster,
        lambda: fleet_view(cluster),
        lambda v: v == EXPECTED_VIEW,
        "the same states after the outage",
        timeout=30,
    )
    assert {name: unit_property(cluster, machine, name, "MainPID") for name in launched} == pids
    pid1 = journal(cluster, machine, "_PID=1")
    assert "Started single@launched.service" in pid1  # the probe sees systemd's messages
    assert "Stopping single@" not in pid1
    assert "Stopping global@" not in pid1
    cluster.fleetctl("destroy", *LOSS_UNITS)
