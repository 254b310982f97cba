"""Lost machines (issue 11): the engine stamps when a simulated machine's presence
expired, keeps the record for ``lost_retention`` and forgets it after; a machine
that registers again is no longer lost; one that leaves on purpose never was."""

from __future__ import annotations

import asyncio
import time

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import LostMachine, Machine
from fleet.engine import Engine
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import async_test, eventually
from tests.engine.harness import simulated_cluster

pytestmark = pytest.mark.etcd

A = "a" * 32
B = "b" * 32
C = "c" * 32


@async_test
async def test_engine_records_and_forgets_lost_machines(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        for machine in (A, B, C):
            await cluster.add_simulated_machine(machine)
        registry = await cluster.new_registry()
        engine = Engine(registry, A, reconcile_interval=0.05, lease_ttl=1.0, lost_retention=2.0)
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: _value(engine.is_leader))
            assert await registry.list_lost_machines() == []
            before = time.time()
            await cluster.kill_simulated_machine(B)
            lost = await eventually(lambda: _stamped(registry), timeout=10.0, what="B stamped lost")
            (only,) = lost
            assert only.machine.id == B
            assert only.machine.public_ip == "127.0.0.1"
            assert only.since is not None
            assert before <= only.since <= time.time()

            # Leaving on purpose is not being lost.
            lease, own = cluster.machine_leases[C]
            await own.unregister_machine(lease)
            await asyncio.sleep(0.5)
            assert [m.machine.id for m in await registry.list_lost_machines()] == [B]

            # After the retention the record is gone.
            await eventually(
                registry.list_lost_machines,
                lambda found: found == [],
                timeout=10.0,
                what="B forgotten",
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@async_test
async def test_a_machine_that_registers_again_is_not_lost(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine(B)
        registry = await cluster.new_registry()
        await cluster.kill_simulated_machine(B)
        await eventually(registry.list_lost_machines, timeout=10.0, what="B lost")
        # No engine noticed yet: lost, since unknown.
        assert await registry.list_lost_machines() == [LostMachine(Machine(B, "127.0.0.1"), None)]
        await cluster.add_simulated_machine(B)
        assert await registry.list_lost_machines() == []


async def _value(value: bool) -> bool:
    return value


async def _stamped(registry: EtcdRegistry) -> list[LostMachine]:
    found = await registry.list_lost_machines()
    return found if found and all(m.since is not None for m in found) else []
