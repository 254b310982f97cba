"""Agent.run on the in-memory systemd: it returns only after stop(); a task of
the agent that ends for any other reason makes it raise, with every other task
cancelled, so fleetd never carries on without an agent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from fleet.errors import FleetError
from tests.agent.support import running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd


def agent_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("agent-")]


async def raised_by(task: asyncio.Task[None]) -> BaseException:
    """What ``task`` (an agent's run) raised; asserts it ended and took every
    other task of the agent with it."""
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done, "run() did not end"
    exc = task.exception()
    assert exc is not None, "run() returned normally"
    assert [t.get_name() for t in agent_tasks() if not t.done()] == []
    return exc


@async_test
async def test_stop_ends_run_normally(etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path) -> None:
    async with world(etcd, etcd_prefix, tmp_path) as w:
        async with running(w.agent()) as task:
            assert not task.done()
        assert task.result() is None
        assert [t.get_name() for t in agent_tasks() if not t.done()] == []


@async_test
async def test_a_task_that_fails_is_raised_by_run(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "run-crash.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        agent = w.agent(resync_interval=0.05)
        task = asyncio.create_task(agent.run())
        await w.schedule(name, hash, DesiredState.LAUNCHED)
        await eventually(w.unit_is(name, "active"))
        # A bug in a component (not a SystemdError it knows to retry) kills its task.
        w.systemd.fail("unit_states", RuntimeError("boom"), times=None)
        exc = await raised_by(task)
        assert isinstance(exc, RuntimeError)
        assert str(exc) == "boom"


@async_test
async def test_a_task_cancelled_by_someone_else_makes_run_raise(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    async with world(etcd, etcd_prefix, tmp_path) as w:
        agent = w.agent()
        task = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.registered.wait(), 5)
        (states,) = [t for t in agent_tasks() if t.get_name() == "agent-states"]
        states.cancel()
        with pytest.raises(FleetError, match="agent task agent-states was cancelled"):
            await asyncio.wait_for(task, 5)


@async_test
async def test_a_task_that_returns_makes_run_raise(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with world(etcd, etcd_prefix, tmp_path) as w:
        agent = w.agent()

        async def ends(_changes: object) -> None:
            return None

        monkeypatch.setattr(agent.states, "follow", ends)
        exc = await raised_by(asyncio.create_task(agent.run()))
        assert isinstance(exc, FleetError)
        assert "agent task agent-systemd ended" in str(exc)
