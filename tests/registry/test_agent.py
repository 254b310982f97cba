"""ClusterView and AgentStore contract: machines on leases, metadata, unit states."""

from __future__ import annotations

import asyncio

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job, Machine, UnitState
from fleet.errors import AlreadyExists
from fleet.ports import ScheduleChange
from fleet.registry.etcd import EtcdRegistry
from fleet.registry.leases import EtcdMachineLease
from tests.registry import async_test, eventually

HASH = "b" * 40


async def connect(etcd: EtcdProcess, prefix: str) -> EtcdRegistry:
    return await EtcdRegistry.connect([etcd.endpoint], prefix, request_timeout=2.0)


def state(name: str, machine_id: str) -> UnitState:
    return UnitState(name, machine_id, "loaded", "active", "running", HASH, DesiredState.LAUNCHED)


@async_test
async def test_register_lists_machine_and_unregister_removes_it_with_states(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        machine = Machine("m1", "10.0.0.1", {"az": "a"}, "0.1.0", {"DISABLE_ENGINE": False})
        lease = await reg.register_machine(machine, ttl=5)
        await reg.publish_unit_state(lease, state("a.service", "m1"))
        assert await reg.list_machines() == [machine]
        assert await reg.list_unit_states() == [state("a.service", "m1")]
        await reg.unregister_machine(lease)
        assert lease.lost
        assert await reg.list_machines() == []
        assert await reg.list_unit_states() == []


@async_test
async def test_duplicate_machine_id_is_already_exists(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        first = await reg.register_machine(Machine("m1", "10.0.0.1"), ttl=5)
        with pytest.raises(AlreadyExists, match="m1"):
            await reg.register_machine(Machine("m1", "10.0.0.2"), ttl=5)
        assert [m.public_ip for m in await reg.list_machines()] == ["10.0.0.1"]
        assert not first.lost


@async_test
async def test_states_vanish_when_the_agent_lease_expires(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    agent = await connect(etcd, etcd_prefix)
    async with await connect(etcd, etcd_prefix) as observer:
        lease = await agent.register_machine(Machine("m1"), ttl=1)
        await agent.publish_unit_state(lease, state("a.service", "m1"))
        # close() stops the keepalive without revoking: the lease must expire.
        await agent.close()

        async def gone() -> bool:
            return await observer.list_unit_states() == [] and await observer.list_machines() == []

        await eventually(gone, timeout=5)


@async_test
async def test_keepalive_holds_a_short_lease_beyond_its_ttl(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        lease = await reg.register_machine(Machine("m1"), ttl=1)
        assert isinstance(lease, EtcdMachineLease)
        beyond_ttl = 2.5

        await asyncio.sleep(beyond_ttl)  # the thing under test is elapsed time itself
        assert not lease.lost
        assert [m.id for m in await reg.list_machines()] == ["m1"]


@async_test
async def test_lease_revoked_behind_our_back_is_reported_lost(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        lease = await reg.register_machine(Machine("m1"), ttl=1)
        assert isinstance(lease, EtcdMachineLease)
        await reg._revoke(lease.lease_id)

        async with asyncio.timeout(3):
            reason = await lease.wait_lost()
        assert "expired" in reason


@async_test
async def test_update_machine(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        lease = await reg.register_machine(Machine("m1", "10.0.0.1"), ttl=5)
        await reg.update_machine(lease, Machine("m1", "10.0.0.9", {"disk": "ssd"}))
        assert await reg.list_machines() == [Machine("m1", "10.0.0.9", {"disk": "ssd"})]


@pytest.mark.parametrize(
    ("static", "dynamic", "expected"),
    [
        pytest.param({"az": "a"}, {"disk": "ssd"}, {"az": "a", "disk": "ssd"}, id="adds"),
        pytest.param({"az": "a"}, {"az": "b"}, {"az": "b"}, id="dynamic-wins"),
        pytest.param({"az": "a", "x": "1"}, {"az": None}, {"x": "1"}, id="none-removes"),
        pytest.param({"az": "a"}, {"az": ""}, {}, id="empty-removes"),
    ],
)
@async_test
async def test_dynamic_metadata_overlay(
    etcd: EtcdProcess,
    etcd_prefix: str,
    static: dict[str, str],
    dynamic: dict[str, str | None],
    expected: dict[str, str],
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.register_machine(Machine("m1", metadata=static), ttl=5)
        await reg.register_machine(Machine("m2", metadata=static), ttl=5)
        for key, value in dynamic.items():
            await reg.set_machine_metadata("m1", key, value)
        machines = {m.id: m for m in await reg.list_machines()}
        assert dict(machines["m1"].metadata) == expected
        assert dict(machines["m2"].metadata) == static


@async_test
async def test_dynamic_metadata_survives_rejoin(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        lease = await reg.register_machine(Machine("m1"), ttl=5)
        await reg.set_machine_metadata("m1", "role", "db")
        await reg.unregister_machine(lease)
        await reg.register_machine(Machine("m1"), ttl=5)
        assert [dict(m.metadata) for m in await reg.list_machines()] == [{"role": "db"}]


@async_test
async def test_unit_states_sorted_and_deletable(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        l1 = await reg.register_machine(Machine("m1"), ttl=5)
        l2 = await reg.register_machine(Machine("m2"), ttl=5)
        for lease, name, mid in [
            (l2, "b.service", "m2"),
            (l1, "b.service", "m1"),
            (l2, "a.service", "m2"),
        ]:
            await reg.publish_unit_state(lease, state(name, mid))
        listed = [(s.name, s.machine_id) for s in await reg.list_unit_states()]
        assert listed == [("a.service", "m2"), ("b.service", "m1"), ("b.service", "m2")]
        await reg.delete_unit_state("b.service", "m1")
        listed = [(s.name, s.machine_id) for s in await reg.list_unit_states()]
        assert listed == [("a.service", "m2"), ("b.service", "m2")]


@async_test
async def test_machine_schedule_sees_only_its_own_placements(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        leader = await reg.campaign("m1", "0.1.0", ttl=5)
        assert leader is not None
        await reg.apply_schedule(
            leader,
            [
                ScheduleChange("a.service", "m1", HASH, DesiredState.LAUNCHED),
                ScheduleChange("b.service", "m2", HASH, DesiredState.LOADED),
                ScheduleChange("c.service", "m10", HASH),
            ],
            {},
        )
        assert await reg.machine_schedule("m1") == {
            "a.service": Job("a.service", HASH, DesiredState.LAUNCHED)
        }
        assert await reg.machine_schedule("m2") == {
            "b.service": Job("b.service", HASH, DesiredState.LOADED)
        }
        assert await reg.list_schedule() == {
            "a.service": "m1",
            "b.service": "m2",
            "c.service": "m10",
        }


@async_test
async def test_resume_machine_adopts_the_previous_process_presence(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    """B8: a restarted fleetd takes over its old lease: no gap, states kept."""
    previous = await connect(etcd, etcd_prefix)
    lease = await previous.register_machine(Machine("m1", "10.0.0.1"), ttl=2)
    await previous.publish_unit_state(lease, state("a.service", "m1"))
    await previous.close()  # the process exits: keepalive stops, nothing revoked
    async with await connect(etcd, etcd_prefix) as reg:
        resumed = await reg.resume_machine(lease.lease_id, Machine("m1", "10.0.0.2"), ttl=2)
        assert resumed is not None
        assert resumed.lease_id == lease.lease_id
        assert await reg.list_machines() == [Machine("m1", "10.0.0.2")]
        await asyncio.sleep(3)  # beyond the TTL: the resumed lease is kept alive
        assert not resumed.lost
        assert await reg.list_unit_states() == [state("a.service", "m1")]
        await reg.publish_unit_state(resumed, state("b.service", "m1"))
        assert len(await reg.list_unit_states()) == 2


@pytest.mark.parametrize(
    ("case", "machines_after"),
    [
        pytest.param("expired", ["m1"], id="expired"),
        # The stale lease is revoked: it was ours, only the id changed.
        pytest.param("other-machine-id", ["m2"], id="other-machine-id"),
        pytest.param("ttl-changed", ["m1"], id="ttl-changed"),
        pytest.param("key-on-another-lease", ["m1"], id="key-on-another-lease"),
    ],
)
@async_test
async def test_resume_machine_refuses_what_it_cannot_prove_is_ours(
    etcd: EtcdProcess, etcd_prefix: str, case: str, machines_after: list[str]
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        owner = await connect(etcd, etcd_prefix)
        lease = await owner.register_machine(Machine("m1", "10.0.0.1"), ttl=2)
        machine, ttl = Machine("m1", "10.0.0.9"), 2.0
        if case == "expired":
            await owner._revoke(lease.lease_id)
        elif case == "other-machine-id":
            machine = Machine("m2", "10.0.0.9")
        elif case == "ttl-changed":
            ttl = 5.0
        elif case == "key-on-another-lease":
            # A stale file naming some live lease of ours that does not hold the key.
            lease_id = await reg._grant(2)
            lease = EtcdMachineLease("m1", lease_id, 2)
        await owner.close()
        assert await reg.resume_machine(lease.lease_id, machine, ttl) is None
        if case == "key-on-another-lease":
            # The real holder is untouched: a copied machine id still collides.
            with pytest.raises(AlreadyExists):
                await reg.register_machine(Machine("m1", "10.0.0.9"), ttl=2)
        else:
            # Whatever the stale lease was, it no longer blocks registration.
            await reg.register_machine(machine, ttl=ttl)
        assert [m.id for m in await reg.list_machines()] == machines_after
