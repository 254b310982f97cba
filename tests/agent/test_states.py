"""Unit-state publishing on the in-memory systemd: what is published, that
systemd's hints (not the resync) carry a change, that the states of units no
longer held are deleted, also those a previous process left on a resumed lease."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, UnitState
from tests.agent.support import running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd

SLOW = 30.0  # a resync interval no test waits for


def is_state(active: str, sub: str) -> Callable[[UnitState | None], bool]:
    def accept(state: UnitState | None) -> bool:
        return state is not None and (state.active_state, state.sub_state) == (active, sub)

    return accept


@async_test
async def test_states_follow_systemds_hints_and_vanish_when_unscheduled(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "st-hello.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        async with running(w.agent(resync_interval=SLOW)):
            await w.schedule(name, hash, DesiredState.LAUNCHED)
            await eventually(w.published(name, is_state("active", "running")))
            state = await w.state_of(name)
            assert state == UnitState(
                name,
                w.machine.id,
                "loaded",
                "active",
                "running",
                hash,
                DesiredState.LAUNCHED,
                start_result="done",
            )
            # The process dies: only systemd's hint can tell the agent in time.
            w.systemd.crash(name)
            await eventually(w.published(name, is_state("failed", "failed")))
            failed = await w.state_of(name)
            assert failed is not None
            assert (failed.result, failed.start_result, failed.error) == ("signal", "done", "")
            await w.schedule(name, None)
            await eventually(w.published(name, lambda s: s is None))


@async_test
async def test_a_loaded_unit_is_published_as_loaded(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "st-loaded.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash, desired=DesiredState.LOADED)
        async with running(w.agent(resync_interval=SLOW)):
            await w.schedule(name, hash, DesiredState.LOADED)
            await eventually(w.published(name, is_state("inactive", "dead")))
            state = await w.state_of(name)
            assert state is not None
            assert (state.load_state, state.fleet_state) == ("loaded", DesiredState.LOADED)


@async_test
async def test_a_resumed_lease_drops_the_states_of_units_no_longer_held(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    kept, dropped = "st-kept.service", "st-dropped.service"
    body, hash = unit()
    lease_file = tmp_path / "agent.lease"
    async with world(etcd, etcd_prefix, tmp_path) as w:
        for name in (kept, dropped):
            await w.create(name, body, hash)
            await w.schedule(name, hash, DesiredState.LAUNCHED)
        first = w.agent(store=await w.own_registry(), lease_file=lease_file)
        async with running(first):
            for name in (kept, dropped):
                await eventually(w.published(name, lambda s: s is not None))
        await w.extra_registries[0].close()
        # While no fleetd runs, the unit is taken off this machine and its file goes.
        await w.schedule(dropped, None)
        (w.units_dir / dropped).unlink()

        second = w.agent(lease_file=lease_file, resync_interval=SLOW)
        async with running(second):
            await eventually(w.published(dropped, lambda s: s is None))
            assert await w.state_of(kept) is not None
