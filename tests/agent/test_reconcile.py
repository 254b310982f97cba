"""The reconcile loop on the in-memory systemd: watches wake it, the resync alone
also converges, a store outage changes nothing (B7), global units follow the
machine's metadata."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from tests.agent.support import FAST_FAILING, holds, running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd

LAUNCHED = DesiredState.LAUNCHED
SLOW = 30.0  # a resync interval no test waits for


@async_test
async def test_a_schedule_change_wakes_the_agent_before_any_resync(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "rc-woken.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        async with running(w.agent(resync_interval=SLOW)):
            names = {task.get_name() for task in asyncio.all_tasks()}
            assert {"agent-watch schedule", "agent-watch globals", "agent-watch metadata"} <= names
            await w.schedule(name, hash, LAUNCHED)
            await eventually(w.unit_is(name, "active"), timeout=SLOW / 3)


@async_test
async def test_without_watches_the_resync_alone_converges(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    """fleet's disable_watches: no watch streams, the periodic resync does the work."""
    name = "rc-nowatch.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        async with running(w.agent(watches=False, resync_interval=0.05)):
            names = {task.get_name() for task in asyncio.all_tasks()}
            assert not any(n.startswith("agent-watch") for n in names), names
            assert "agent-reconcile" in names
            await w.schedule(name, hash, LAUNCHED)
            await eventually(w.unit_is(name, "active"))


@async_test
async def test_a_store_outage_changes_nothing_locally(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    """B7: while etcd does not answer, passes fail and no unit is touched; when it
    answers again the agent converges without restarting anything."""
    name = "rc-outage.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        await w.schedule(name, hash, LAUNCHED)
        store = await w.own_registry(request_timeout=FAST_FAILING)
        agent = w.agent(store=store, resync_interval=0.05)
        async with running(agent):
            await eventually(w.unit_is(name, "active"))
            await eventually(holds(lambda: agent.passes >= 1))
            mark = len(w.systemd.calls)
            etcd.pause()
            try:
                agent.last_error = None
                await eventually(holds(lambda: agent.last_error is not None))
                passes = agent.passes
                agent.last_error = None  # and the retry fails as well
                await eventually(holds(lambda: agent.last_error is not None))
                assert agent.passes == passes
                assert w.mutations(mark) == []
                assert await w.active(name) == "active"
                assert name in agent.current
            finally:
                etcd.resume()
            await eventually(holds(lambda: agent.passes > passes))
            assert w.mutations(mark) == []
            assert w.systemd.started(name) == 1


@async_test
async def test_global_units_follow_the_machine_metadata(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    web, db = "rc-web.service", "rc-db.service"
    web_body, web_hash = unit(extra="\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=web\n")
    db_body, db_hash = unit(extra="\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=db\n")
    async with world(etcd, etcd_prefix, tmp_path, metadata={"role": "web"}) as w:
        await w.create(web, web_body, web_hash)
        await w.create(db, db_body, db_hash)
        agent = w.agent(resync_interval=SLOW)
        async with running(agent):
            await eventually(w.unit_is(web, "active"))
            assert db not in agent.current
            # Dynamic metadata (the API's PATCH) wins over the configured value.
            await w.registry.set_machine_metadata(w.machine.id, "role", "db")
            await eventually(w.unit_is(db, "active"))
            await eventually(holds(lambda: web not in agent.current))
            assert not (w.units_dir / web).exists()
            # A tombstone hides the key: no global unit matches any more.
            await w.registry.set_machine_metadata(w.machine.id, "role", None)
            await eventually(holds(lambda: agent.current == {}))
            assert w.systemd.started(web) == w.systemd.started(db) == 1
