"""Watchable contract: ordered events, resume across an etcd restart, compaction."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from fleet.errors import StoreCompacted, StoreUnavailable
from fleet.ports import EventKind, WatchEvent
from fleet.registry.etcd import EtcdRegistry
from tests.registry import async_test, eventually

BODY = "[Service]\nExecStart=/bin/true\n"
HASH = "da39a3ee5e6b4b0d3255bfef95601890afd80709"  # any well-formed hash will do here


async def connect(endpoint: str, prefix: str) -> EtcdRegistry:
    return await EtcdRegistry.connect([endpoint], prefix, request_timeout=1.0)


async def collect(stream: AsyncIterator[list[WatchEvent]], into: list[WatchEvent]) -> None:
    async for batch in stream:
        into.extend(batch)


@async_test
async def test_list_then_watch_delivers_puts_and_deletes_in_order(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd.endpoint, etcd_prefix) as reg:
        await reg.create_unit("a.service", BODY, HASH, DesiredState.LOADED)
        listed, revision = await reg.list_prefix("job/")
        assert set(listed) == {"job/a.service"}
        events: list[WatchEvent] = []
        watcher = asyncio.create_task(collect(reg.watch_prefix("job/", revision + 1), events))
        await reg.create_unit("b.service", BODY, HASH, DesiredState.LOADED)
        await reg.set_desired_state("a.service", DesiredState.LAUNCHED)
        await reg.destroy_unit("b.service")

        async def three() -> bool:
            return len(events) >= 3

        await eventually(three)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert [(e.kind, e.key) for e in events] == [
            (EventKind.PUT, "job/b.service"),
            (EventKind.PUT, "job/a.service"),
            (EventKind.DELETE, "job/b.service"),
        ]
        assert [e.revision for e in events] == sorted({e.revision for e in events})
        assert events[0].revision > revision


@async_test
async def test_watch_from_zero_starts_now_and_closes_cleanly(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd.endpoint, etcd_prefix) as reg:
        await reg.set_machine_metadata("m1", "old", "1")
        stream = reg.watch_prefix("machine-metadata/", 0)
        first = asyncio.ensure_future(anext(stream))
        written = 0

        async def delivered() -> bool:
            # The watch is created asynchronously: keep writing until one arrives.
            nonlocal written
            await reg.set_machine_metadata("m1", f"new{written}", "2")
            written += 1
            return first.done()

        await eventually(delivered)
        keys = [e.key for e in first.result()]
        assert "machine-metadata/m1/old" not in keys
        assert keys[0].startswith("machine-metadata/m1/new")
        async with asyncio.timeout(2):
            await stream.aclose()  # type: ignore[attr-defined]


@async_test
async def test_compacted_start_revision_raises_store_compacted(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd.endpoint, etcd_prefix) as reg:
        await reg.set_machine_metadata("m1", "k", "1")
        _, old = await reg.list_prefix("machine-metadata/")
        await reg.set_machine_metadata("m1", "k", "2")
        await reg.set_machine_metadata("m1", "k", "3")
        now = await reg.current_revision()
        await reg.compact(now)
        with pytest.raises(StoreCompacted) as caught:
            async for _ in reg.watch_prefix("machine-metadata/", old):
                pass
        assert caught.value.compact_revision == now


@async_test
async def test_watch_resumes_after_etcd_restart_without_losing_events(tmp_path: Path) -> None:
    server = EtcdProcess(data_dir=tmp_path / "etcd").start()
    try:
        reg = await connect(server.endpoint, "/restart/")
        _, revision = await reg.list_prefix("job/")
        events: list[WatchEvent] = []
        watcher = asyncio.create_task(collect(reg.watch_prefix("job/", revision + 1), events))
        await reg.create_unit("a.service", BODY, HASH, DesiredState.LOADED)

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
                await reg.create_unit(name, BODY, HASH, DesiredState.LOADED)
            except StoreUnavailable:
                return False
            return True

        await eventually(lambda: write("b.service"))
        await reg.create_unit("c.service", BODY, HASH, DesiredState.LOADED)
        await eventually(lambda: seen(3))
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await reg.close()
        assert [e.key for e in events] == ["job/a.service", "job/b.service", "job/c.service"]
    finally:
        server.stop()
