"""Watchable contract: ordered events, resume across an etcd restart, compaction."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job
from fleet.errors import StoreCompacted, StoreUnavailable
from fleet.ports import JobChanged, MetadataChanged, RegistryEvent, Scope, Topic
from fleet.registry.etcd import EtcdRegistry
from tests.registry import async_test, eventually
from tests.registry.support import compact, current_revision

JOBS = Scope(Topic.JOBS)
METADATA = Scope(Topic.METADATA)

BODY = "[Service]\nExecStart=/bin/true\n"
HASH = "da39a3ee5e6b4b0d3255bfef95601890afd80709"  # any well-formed hash will do here


async def connect(endpoint: str, prefix: str) -> EtcdRegistry:
    return await EtcdRegistry.connect([endpoint], prefix, request_timeout=1.0)


async def collect(stream: AsyncIterator[list[RegistryEvent]], into: list[RegistryEvent]) -> None:
    async for batch in stream:
        into.extend(batch)


async def create(reg: EtcdRegistry, name: str) -> None:
    await reg.create_unit(name, BODY, HASH, DesiredState.LOADED, is_global=False)


def job_changes(events: list[RegistryEvent]) -> list[JobChanged]:
    assert all(isinstance(e, JobChanged) for e in events), events
    return [e for e in events if isinstance(e, JobChanged)]


@async_test
async def test_list_then_watch_delivers_puts_and_deletes_in_order(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd.endpoint, etcd_prefix) as reg:
        await create(reg, "a.service")
        listed, revision = await reg.list_changes(JOBS)
        assert [(c.name, c.job) for c in job_changes(listed)] == [
            ("a.service", Job("a.service", HASH, DesiredState.LOADED))
        ]
        events: list[RegistryEvent] = []
        watcher = asyncio.create_task(collect(reg.watch(JOBS, revision + 1), events))
        await create(reg, "b.service")
        await reg.set_desired_state("a.service", DesiredState.LAUNCHED)
        await reg.destroy_unit("b.service")

        async def three() -> bool:
            return len(events) >= 3

        await eventually(three)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        changes = job_changes(events)
        assert [(c.name, c.job) for c in changes] == [
            ("b.service", Job("b.service", HASH, DesiredState.LOADED)),  # put
            ("a.service", Job("a.service", HASH, DesiredState.LAUNCHED)),  # put
            ("b.service", None),  # delete
        ]
        assert [c.revision for c in changes] == sorted({c.revision for c in changes})
        assert changes[0].revision > revision


@async_test
async def test_watch_from_zero_starts_now_and_closes_cleanly(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd.endpoint, etcd_prefix) as reg:
        await reg.set_machine_metadata("m1", "old", "1")
        stream = reg.watch(METADATA, 0)
        first = asyncio.ensure_future(anext(stream))
        written = 0

        async def delivered() -> bool:
            # The watch is created asynchronously: keep writing until one arrives.
            nonlocal written
            await reg.set_machine_metadata("m1", f"new{written}", "2")
            written += 1
            return first.done()

        await eventually(delivered)
        changes = first.result()
        assert all(isinstance(c, MetadataChanged) for c in changes), changes
        keys = [(c.machine_id, c.key) for c in changes if isinstance(c, MetadataChanged)]
        assert ("m1", "old") not in keys
        assert keys[0][0] == "m1"
        assert keys[0][1].startswith("new")
        async with asyncio.timeout(2):
            await stream.aclose()


@async_test
async def test_compacted_start_revision_raises_store_compacted(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd.endpoint, etcd_prefix) as reg:
        await reg.set_machine_metadata("m1", "k", "1")
        _, old = await reg.list_changes(METADATA)
        await reg.set_machine_metadata("m1", "k", "2")
        await reg.set_machine_metadata("m1", "k", "3")
        now = await current_revision(reg)
        await compact(reg, now)
        with pytest.raises(StoreCompacted) as caught:
            async for _ in reg.watch(METADATA, old):
                pass
        assert caught.value.compact_revision == now


@async_test
async def test_watch_resumes_after_etcd_restart_without_losing_events(tmp_path: Path) -> None:
    server = EtcdProcess(data_dir=tmp_path / "etcd").start()
    try:
        reg = await connect(server.endpoint, "/restart/")
        _, revision = await reg.list_changes(JOBS)
        events: list[RegistryEvent] = []
        watcher = asyncio.create_task(collect(reg.watch(JOBS, revision + 1), events))
        await create(reg, "a.service")

        async def seen(n: int) -> bool:
            return len(events) >= n

        await eventually(lambda: seen(1))
        await asyncio.to_thread(server.stop)
        # While etcd is down the watcher backs off instead of spinning a core.
        cpu_before = time.process_time()
        await asyncio.sleep(1.0)  # the outage itself is what is being measured
        assert time.process_time() - cpu_before < 0.3
        await asyncio.to_thread(server.start)

        async def write(name: str) -> bool:
            try:
                await create(reg, name)
            except StoreUnavailable:
                return False
            return True

        await eventually(lambda: write("b.service"))
        await create(reg, "c.service")
        await eventually(lambda: seen(3))
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await reg.close()
        assert [c.name for c in job_changes(events)] == ["a.service", "b.service", "c.service"]
    finally:
        server.stop()
