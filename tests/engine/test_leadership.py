"""Engine leadership against a real etcd, with SIMULATED machines: handover on a
clean stop, standbys without lease churn, the engine version gate, and the
post-outage grace armed only by recent trouble (issue 13)."""

from __future__ import annotations

import asyncio
import re

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.metrics import FleetMetrics
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import async_test
from tests.engine.harness import (
    LEASE_TTL,
    RECONCILE,
    SimulatedCluster,
    simulated_cluster,
    wait_until,
)

pytestmark = pytest.mark.etcd


def _operations(metrics: FleetMetrics, operation: str) -> float:
    text = metrics.render().decode()
    found = re.search(
        rf'^fleet_registry_operation_count_total{{operation="{operation}"}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def _leaders(cluster: SimulatedCluster, *ids: str) -> list[str]:
    return [i for i in ids if cluster.engine(i).is_leader]


async def _one_leader(cluster: SimulatedCluster, *ids: str) -> str:
    async def probe() -> list[str]:
        return await _leaders(cluster, *ids)

    return (await wait_until(probe, lambda ls: len(ls) == 1, what="one leader"))[0]


@async_test
async def test_a_stopping_leader_hands_over_within_one_second(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    # A 10 s lease: a takeover that waited for the lease to expire would take 10 s.
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        for name in ("engine-a", "engine-b"):
            await cluster.start_engine(name, lease_ttl=10.0)
        leader = await _one_leader(cluster, "engine-a", "engine-b")
        standby = "engine-b" if leader == "engine-a" else "engine-a"
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        await cluster.stop_engine(leader)

        async def standby_leads() -> bool:
            return cluster.engine(standby).is_leader

        await wait_until(standby_leads, bool, timeout=5.0, what="the standby leads")
        assert loop.time() - stopped < 1.0


@async_test
async def test_a_standby_sends_no_lease_requests_while_the_leader_lives(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.start_engine("engine-a")
        await _one_leader(cluster, "engine-a")
        metrics = FleetMetrics()
        await cluster.start_engine("engine-b", registry_metrics=metrics)
        # Twenty reconcile intervals (the old standby granted a lease every one).
        await asyncio.sleep(20 * RECONCILE)
        assert cluster.engine("engine-a").is_leader
        assert not cluster.engine("engine-b").is_leader
        # One attempt when it started, none since.
        assert _operations(metrics, "LeaseGrant") <= 1
        assert _operations(metrics, "LeaseRevoke") <= 1
        assert _operations(metrics, "Txn") <= 1


@async_test
async def test_an_older_engine_never_leads_while_a_newer_one_is_registered(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.start_engine("old-1", engine_version=1)
        assert await _one_leader(cluster, "old-1") == "old-1"
        # A newer engine deposes the older leader at once.
        await cluster.start_engine("new-1", engine_version=2)
        await wait_until(
            lambda: _leaders(cluster, "old-1", "new-1"),
            lambda ls: ls == ["new-1"],
            timeout=3.0,
            what="the newer engine leads alone",
        )
        await cluster.start_engine("old-2", engine_version=1)
        # Without the newer engine no older one takes over: no leader at all.
        await cluster.stop_engine("new-1")
        await asyncio.sleep(3 * LEASE_TTL)
        assert await _leaders(cluster, "old-1", "old-2") == []
        registry: EtcdRegistry = cluster.registry
        assert await registry.engine_version() == 2
        assert await registry.get_leader() is None
        # Another engine of the newest version leads.
        await cluster.start_engine("new-2", engine_version=2)
        assert await _one_leader(cluster, "old-1", "old-2", "new-2") == "new-2"


async def _failover_moves_units_after(
    cluster: SimulatedCluster, *, standby_failure_age: float, grace: float
) -> float:
    """Seconds from a machine's death (together with the leader's clean stop)
    until its unit is on another machine; the standby saw one registry failure
    ``standby_failure_age`` seconds before."""
    # Alone at first, so app.service lands there (unpinned: a unit pinned with
    # MachineID stays scheduled on its absent machine).
    await cluster.add_simulated_machine("sim-doomed")
    await cluster.submit("app.service")
    await cluster.submit("other.service")
    await cluster.start_engine("engine-a", machine_grace=grace)
    await _one_leader(cluster, "engine-a")
    await wait_until(cluster.schedule, lambda s: "app.service" in s, what="app placed")
    await cluster.start_engine("engine-b", machine_grace=grace)
    await cluster.add_simulated_machine("sim-survivor")
    # The standby's registry failure (as its campaign or watch would report it).
    cluster.engine("engine-b")._note_store_failure()
    await asyncio.sleep(standby_failure_age)
    loop = asyncio.get_running_loop()
    died = loop.time()
    await cluster.kill_simulated_machine("sim-doomed")
    await cluster.stop_engine("engine-a")
    await wait_until(
        cluster.schedule,
        lambda s: s.get("app.service", []) not in ([], ["sim-doomed"]),
        timeout=grace + 5,
        what="app.service moved off the dead machine",
    )
    return loop.time() - died


@async_test
async def test_a_standby_failure_long_ago_does_not_delay_a_failover(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    grace = 4.0
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        took = await _failover_moves_units_after(
            cluster, standby_failure_age=grace + 0.5, grace=grace
        )
    # The machine's lease expiry (LEASE_TTL) and a pass, not the grace.
    assert took < LEASE_TTL + 2.0 < grace


@async_test
async def test_a_recent_standby_failure_arms_the_grace(etcd: EtcdProcess, etcd_prefix: str) -> None:
    grace = 4.0
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        took = await _failover_moves_units_after(cluster, standby_failure_age=0.0, grace=grace)
    # The unit stayed put for (most of) the grace: its agent might only have lost
    # its presence to the outage the standby saw.
    assert took >= grace - 1.0
