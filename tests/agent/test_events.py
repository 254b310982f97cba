"""The agent's events (B13) on the in-memory systemd and a real etcd: loaded,
started with the start job's result, failed with systemd's Result, a failed
action with its error, stopped and unloaded; none with events off."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.events import EventQuery
from fleet.core.model import DesiredState
from tests.agent.support import running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd

SLOW = 30.0  # a resync interval no test waits for


@async_test
async def test_the_agent_records_what_it_does_and_what_systemd_says(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "ev-hello.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)

        async def history() -> list[tuple[str, str | None]]:
            found, _ = await w.registry.list_events(EventQuery(units=(name,)))
            assert all(e.machine == w.machine.id for e in found)
            return [(e.kind.value, e.result) for e in found]

        async with running(w.agent(resync_interval=SLOW)):
            await w.schedule(name, hash, DesiredState.LAUNCHED)
            await eventually(history, lambda h: ("started", "done") in h, what="started")
            w.systemd.crash(name)
            await eventually(history, lambda h: ("failed", "signal") in h, what="failed")
            w.systemd.fail("start_unit")
            await w.schedule(name, hash, DesiredState.LOADED)
            await eventually(history, lambda h: ("stopped", None) in h, what="stopped")
            await w.schedule(name, hash, DesiredState.LAUNCHED)
            await eventually(history, lambda h: ("failed", "error") in h, what="start failed")
            await w.schedule(name, None)
            seen = await eventually(history, lambda h: ("unloaded", None) in h, what="unloaded")
        kinds = [k for k, _ in seen]
        assert kinds[:4] == ["loaded", "started", "failed", "stopped"]
        found, _ = await w.registry.list_events(EventQuery(units=(name,)))
        start_failed = [e for e in found if e.result == "error"]
        assert "start failed" in start_failed[0].message
        assert "injected failure" in start_failed[0].message


@async_test
async def test_with_events_off_the_agent_records_none(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "ev-quiet.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        async with running(w.agent(resync_interval=SLOW, events=False)):
            await w.schedule(name, hash, DesiredState.LAUNCHED)
            await eventually(
                w.published(name, lambda s: s is not None and s.start_result == "done")
            )
        found, _ = await w.registry.list_events(EventQuery())
        assert found == []
