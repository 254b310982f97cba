"""EventStore contract on a real etcd: events ride in fenced schedule writes,
stay readable after a compaction, live on a shared age lease and stay within
their count bound after 10,000 changes (B13)."""

from __future__ import annotations

import asyncio

import pytest
from aetcd import rpc

from fleet.cluster.etcd import EtcdProcess
from fleet.core.events import (
    MAX_AGE,
    MAX_PER_MACHINE,
    MAX_PER_UNIT,
    WINDOW,
    EventFactory,
    EventKind,
    EventQuery,
)
from fleet.errors import NotLeader, StoreCompacted
from fleet.ports import ScheduleChange
from fleet.registry.etcd import EtcdLeadership, EtcdRegistry
from tests.asyncsupport import async_test
from tests.registry.support import compact, current_revision, dump, mod_revisions

HASH = "c" * 40


async def connect(etcd: EtcdProcess, prefix: str) -> EtcdRegistry:
    return await EtcdRegistry.connect([etcd.endpoint], prefix, request_timeout=2.0)


@async_test
async def test_engine_events_follow_their_schedule_writes_fenced(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        leadership = await reg.campaign("m1", "0.1.0", ttl=5)
        assert leadership is not None
        factory = EventFactory("m1")
        placed = factory.make(
            1000.0, EventKind.PLACED, unit="a.service", machine="m2", reason="least loaded"
        )
        before = await current_revision(reg)
        await reg.apply_schedule(
            leadership, [ScheduleChange("a.service", "m2", HASH)], {}, events=[placed]
        )
        await reg.settle_events()
        # The schedule's transaction, then the event's (and the window's lease grant).
        revisions = await mod_revisions(reg)
        assert revisions["schedule/m2/a.service"] == before + 1
        assert revisions[f"events/unit/a.service/{placed.id}"] == before + 2
        found, _ = await reg.list_events(EventQuery(units=("a.service",)))
        assert found == [placed]


@async_test
async def test_a_deposed_leader_writes_no_events(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as a, await connect(etcd, etcd_prefix) as b:
        old = await a.campaign("m1", "0.1.0", ttl=5)
        assert isinstance(old, EtcdLeadership)
        await b._revoke(old.lease_id)
        assert await b.campaign("m2", "0.1.0", ttl=5) is not None
        event = EventFactory("m1").make(1.0, EventKind.PLACED, unit="a.service", machine="m2")
        # Events alone are fenced: the failed fence marks the leadership lost.
        await a.apply_schedule(old, [], {}, events=[event])
        await a.settle_events()
        assert old.lost
        with pytest.raises(NotLeader):
            await a.apply_schedule(
                old, [ScheduleChange("a.service", "m2", HASH)], {}, events=[event]
            )
        assert await dump(a, "events/") == {}


@async_test
async def test_history_is_readable_after_a_compaction(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        factory = EventFactory("m1")
        recorded = [
            factory.make(10.0 + i, EventKind.STARTED, unit="b.service", machine="m1")
            for i in range(5)
        ]
        await reg.record_events(recorded)
        start = await current_revision(reg)
        await reg.record_events([factory.make(20.0, EventKind.MACHINE_LEFT, machine="m1")])
        await compact(reg, await current_revision(reg))
        found, _ = await reg.list_events(EventQuery(units=("b.service",)))
        assert [e.id for e in found] == [e.id for e in recorded] + [found[-1].id]
        assert found[-1].kind is EventKind.MACHINE_LEFT
        stream = reg.watch_events(start)
        with pytest.raises(StoreCompacted):
            await anext(stream)


@async_test
async def test_events_share_one_lease_of_max_age_plus_a_window(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        factory = EventFactory("m1")
        await reg.record_events(
            [factory.make(1.0, EventKind.LOADED, unit="c.service", machine="m1")]
        )
        await reg.record_events(
            [factory.make(2.0, EventKind.STOPPED, unit="c.service", machine="m1")]
        )
        start = reg.keys.events()
        response = await reg.connection.call(
            "kv", "Range", rpc.RangeRequest(key=start, range_end=start[:-1] + b"0")
        )
        leases = {int(kv.lease) for kv in response.kvs}
        assert len(response.kvs) == 2
        assert len(leases) == 1
        assert 0 not in leases
        ttl = await reg.connection.call(
            "lease", "LeaseTimeToLive", rpc.LeaseTimeToLiveRequest(ID=leases.pop())
        )
        assert int(ttl.grantedTTL) == int(MAX_AGE + WINDOW)


@async_test
async def test_history_stays_within_its_bound_after_10000_changes(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        leadership = await reg.campaign("m1", "0.1.0", ttl=30)
        assert leadership is not None
        factory = EventFactory("m1")
        counts: list[int] = []
        for round_ in range(100):  # 10,000 changes: 100 passes of 50 unit and 50 machine events
            now = 1000.0 + round_
            events = [
                factory.make(now, EventKind.PLACED, unit="d.service", machine="m2")
                for _ in range(50)
            ] + [factory.make(now, EventKind.MACHINE_CORDONED, machine="m2") for _ in range(50)]
            await reg.apply_schedule(leadership, [], {}, events=events)
            if round_ % 10 == 9:  # the engine trims every TRIM_EVERY_PASSES passes
                await reg.trim_events()
                stored = await dump(reg, "events/")
                counts.append(len(stored))
        stored = await dump(reg, "events/")
        units = [k for k in stored if k.startswith("events/unit/d.service/")]
        machines = [k for k in stored if k.startswith("events/machine/m2/")]
        assert len(units) == MAX_PER_UNIT
        assert len(machines) == MAX_PER_MACHINE
        assert max(counts) == MAX_PER_UNIT + MAX_PER_MACHINE
        # The newest were kept; the unit's history includes its machine's events.
        found, _ = await reg.list_events(EventQuery(units=("d.service",)))
        assert len(found) == MAX_PER_UNIT + MAX_PER_MACHINE
        of_unit = [e.id for e in found if e.unit == "d.service"]
        assert of_unit[-1] == max(k.rsplit("/", 1)[1] for k in units)
        assert min(of_unit) == sorted(k.rsplit("/", 1)[1] for k in units)[0]
        assert await reg.trim_events() == 0  # nothing written since: nothing to do


@async_test
async def test_watch_delivers_new_events_only(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        factory = EventFactory("m1")
        old = factory.make(1.0, EventKind.LOADED, unit="e.service", machine="m1")
        await reg.record_events([old])
        _, revision = await reg.list_events(EventQuery())
        stream = reg.watch_events(revision + 1)
        new = factory.make(2.0, EventKind.STARTED, unit="e.service", machine="m1", result="done")
        task = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        await reg.record_events([new])
        batch = await asyncio.wait_for(task, 5)
        assert batch == [new]
        await stream.aclose()
