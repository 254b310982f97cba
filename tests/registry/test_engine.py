"""EngineStore contract: leadership on a lease, fenced schedule writes."""

from __future__ import annotations

import asyncio

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, PlacementReason
from fleet.errors import NotLeader
from fleet.ports import ScheduleChange
from fleet.registry.etcd import EtcdLeadership, EtcdRegistry
from tests.asyncsupport import async_test

HASH = "c" * 40


async def connect(etcd: EtcdProcess, prefix: str) -> EtcdRegistry:
    return await EtcdRegistry.connect([etcd.endpoint], prefix, request_timeout=2.0)


@async_test
async def test_second_campaign_gets_none_while_first_holds(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as a, await connect(etcd, etcd_prefix) as b:
        first = await a.campaign("m1", "0.1.0", ttl=5)
        assert first is not None
        assert not first.lost
        assert await b.campaign("m2", "0.1.0", ttl=5) is None
        assert await b.get_leader() == ("m1", "0.1.0")
        await a.resign(first)
        assert first.lost
        second = await b.campaign("m2", "0.1.0", ttl=5)
        assert second is not None
        assert second.machine_id == "m2"


@async_test
async def test_deposed_leader_cannot_write(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as a, await connect(etcd, etcd_prefix) as b:
        old = await a.campaign("m1", "0.1.0", ttl=5)
        assert isinstance(old, EtcdLeadership)
        # The old leader's lease disappears (as after a long pause) without it noticing yet.
        await b._revoke(old.lease_id)
        new = await b.campaign("m2", "0.1.0", ttl=5)
        assert new is not None
        before = await a.list_schedule_entries()
        with pytest.raises(NotLeader):
            await a.apply_schedule(
                old, [ScheduleChange("x.service", "m1", HASH)], {"x": PlacementReason("r")}
            )
        assert old.lost
        assert await a.list_schedule_entries() == before == {}
        assert await a.list_reasons() == {}
        # The new leader writes fine.
        await b.apply_schedule(new, [ScheduleChange("x.service", "m2", HASH)], {})
        assert await b.list_schedule() == {"x.service": "m2"}


@async_test
async def test_same_machine_new_term_fences_the_old_term(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        old = await reg.campaign("m1", "0.1.0", ttl=5)
        assert isinstance(old, EtcdLeadership)
        await reg._revoke(old.lease_id)
        new = await reg.campaign("m1", "0.1.0", ttl=5)
        assert new is not None
        with pytest.raises(NotLeader):
            await reg.apply_schedule(old, [ScheduleChange("x.service", "m1", HASH)], {})


@async_test
async def test_leadership_lost_when_lease_revoked(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        leadership = await reg.campaign("m1", "0.1.0", ttl=1)
        assert isinstance(leadership, EtcdLeadership)
        await reg._revoke(leadership.lease_id)
        async with asyncio.timeout(3):
            await leadership.wait_lost()
        assert leadership.lost
        with pytest.raises(NotLeader):
            await reg.apply_schedule(leadership, [], {})


@async_test
async def test_thousand_changes_in_one_apply(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        leadership = await reg.campaign("m1", "0.1.0", ttl=5)
        assert leadership is not None
        changes = [ScheduleChange(f"u{i:04}.service", f"m{i % 7}", HASH) for i in range(1000)]
        reasons: dict[str, PlacementReason | None] = {
            f"r{i}.service": PlacementReason("no machine") for i in range(300)
        }
        await reg.apply_schedule(leadership, changes, reasons)
        schedule = await reg.list_schedule()
        assert len(schedule) == 1000
        assert schedule["u0009.service"] == "m2"
        assert len(await reg.list_reasons()) == 300
        # Removals and reason clears in bulk, including a key named twice.
        removals = [ScheduleChange(c.name, c.machine_id, None) for c in changes]
        twice = [ScheduleChange("u0000.service", "m0", HASH, DesiredState.LOADED), removals[0]]
        await reg.apply_schedule(leadership, [*removals, *twice], dict.fromkeys(reasons))
        assert await reg.list_schedule() == {}
        assert await reg.list_reasons() == {}


@async_test
async def test_reasons_set_and_clear(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        leadership = await reg.campaign("m1", "0.1.0", ttl=5)
        assert leadership is not None
        why = PlacementReason("no machine has az=b", "a" * 40, DesiredState.LAUNCHED, "f" * 16)
        await reg.apply_schedule(leadership, [], {"a.service": why})
        assert await reg.list_reasons() == {"a.service": why}  # with what it judged
        await reg.apply_schedule(
            leadership, [ScheduleChange("a.service", "m1", HASH)], {"a.service": None}
        )
        assert await reg.list_reasons() == {}
        assert await reg.list_schedule() == {"a.service": "m1"}
