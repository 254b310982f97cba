"""The agent against a real etcd and a real systemd machine.

A "simulated engine" places units by writing ``schedule/<id>/<name>`` through
the registry; the agent must make the machine's systemd follow, publish unit
states, keep units running while etcd is unreachable (B7) and adopt running
units after a restart instead of restarting them (B8)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.agent import Agent
from fleet.cluster import nodes
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import Leadership, ScheduleChange
from fleet.registry.etcd import EtcdRegistry
from fleet.systemd.dbus import SERVICE_IFACE, SystemdManager
from tests.systemd.support import NodeUnitDir, wait_for

pytestmark = pytest.mark.etcd

TTL = 2.0


def unit(command: str = "/usr/bin/sleep 3000", extra: str = "") -> tuple[str, str]:
    parsed = UnitFile.parse(f"[Service]\nExecStart={command}\n{extra}")
    return parsed.serialize(), parsed.hash


@dataclass
class World:
    registry: EtcdRegistry
    systemd: SystemdManager
    machine: Machine
    unit_dir: NodeUnitDir
    engine: Leadership

    def agent(self, store: EtcdRegistry | None = None, **kwargs: object) -> Agent:
        options: dict[str, object] = {
            "units_dir": self.unit_dir.host,
            "systemd_units_dir": self.unit_dir.inside,
            "ttl": TTL,
            "resync_interval": 0.5,
            "retry_interval": 0.2,
            "register_backoff": (0.1, 0.5),
        }
        options.update(kwargs)
        registry = store or self.registry
        return Agent(registry, self.systemd, self.machine, **options)  # type: ignore[arg-type]

    async def schedule(self, name: str, hash: str | None, desired: DesiredState) -> None:
        change = ScheduleChange(name, self.machine.id, hash, desired)
        await self.registry.apply_schedule(self.engine, [change], {})

    async def active(self, name: str) -> str:
        return (await self.systemd.unit_states([name]))[name][1]

    async def state_of(self, name: str) -> UnitState | None:
        for state in await self.registry.list_unit_states():
            if state.name == name and state.machine_id == self.machine.id:
                return state
        return None


@asynccontextmanager
async def world(
    etcd: EtcdProcess, prefix: str, node: nodes.Node, unit_dir: NodeUnitDir
) -> AsyncIterator[World]:
    registry = await EtcdRegistry.connect([etcd.endpoint], prefix)
    systemd = await SystemdManager().connect(node.bus)
    try:
        engine = await registry.campaign("simulated-engine", "1", 60)
        assert engine is not None
        yield World(registry, systemd, Machine(id=node.machine_id), unit_dir, engine)
    finally:
        systemd.close()
        await registry.close()


@asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.registered.wait(), 10)
        yield task
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


async def unschedule_all(w: World, *names: str) -> None:
    """Leave the machine clean for the next test (call while an agent runs)."""
    for name in names:
        await w.schedule(name, None, DesiredState.LAUNCHED)
    await wait_for(
        lambda: asyncio.sleep(0, sorted(p.name for p in w.unit_dir.host.iterdir())),
        lambda files: not files,
        what="unit files removed",
    )
    for name in names:
        await wait_for(lambda n=name: w.state_of(n), lambda s: s is None, what="state deleted")  # type: ignore[misc]
        assert (await w.systemd.unit_states([name]))[name][0] == "not-found"


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def test_scheduled_unit_runs_then_is_removed(
    etcd: EtcdProcess, etcd_prefix: str, agent_node: nodes.Node, unit_dir: NodeUnitDir
) -> None:
    name = "agt-hello.service"
    body, hash = unit()

    async def main() -> None:
        async with world(etcd, etcd_prefix, agent_node, unit_dir) as w:
            await w.registry.create_unit(name, body, hash, DesiredState.LAUNCHED, False)
            agent = w.agent()
            async with running(agent):
                await w.schedule(name, hash, DesiredState.LAUNCHED)
                await wait_for(lambda: w.active(name), lambda a: a == "active", what="active")
                state = await wait_for(
                    lambda: w.state_of(name),
                    lambda s: s is not None and s.active_state == "active",
                    what="published state",
                )
                assert state is not None
                assert (state.load_state, state.sub_state, state.hash) == (
                    "loaded",
                    "running",
                    hash,
                )
                assert state.fleet_state is DesiredState.LAUNCHED
                assert await w.systemd.unit_file_state(name) == "linked-runtime"

                await w.schedule(name, hash, DesiredState.LOADED)
                await wait_for(lambda: w.active(name), lambda a: a == "inactive", what="stopped")
                assert (unit_dir.host / name).exists()

                await w.schedule(name, None, DesiredState.LAUNCHED)
                await wait_for(lambda: w.state_of(name), lambda s: s is None, what="state gone")
                assert not (unit_dir.host / name).exists()
                states = await w.systemd.unit_states([name])
                assert states[name][0] == "not-found"

    run(main)


def test_without_watches_the_resync_alone_converges(
    etcd: EtcdProcess, etcd_prefix: str, agent_node: nodes.Node, unit_dir: NodeUnitDir
) -> None:
    """fleet's disable_watches: no watch streams, the periodic resync does the work."""
    name = "agt-nowatch.service"
    body, hash = unit()

    async def main() -> None:
        async with world(etcd, etcd_prefix, agent_node, unit_dir) as w:
            await w.registry.create_unit(name, body, hash, DesiredState.LAUNCHED, False)
            agent = w.agent(watches=False)
            async with running(agent):
                names = {task.get_name() for task in asyncio.all_tasks()}
                assert not any(n.startswith("agent-watch") for n in names), names
                assert "agent-reconcile" in names
                await w.schedule(name, hash, DesiredState.LAUNCHED)
                await wait_for(lambda: w.active(name), lambda a: a == "active", what="active")
                await unschedule_all(w, name)

    run(main)


def test_etcd_outage_stops_nothing_and_recovers_without_restart(
    etcd: EtcdProcess, etcd_prefix: str, agent_node: nodes.Node, unit_dir: NodeUnitDir
) -> None:
    name = "agt-outage.service"
    body, hash = unit()

    async def main() -> None:
        async with world(etcd, etcd_prefix, agent_node, unit_dir) as w:
            await w.registry.create_unit(name, body, hash, DesiredState.LAUNCHED, False)
            await w.schedule(name, hash, DesiredState.LAUNCHED)
            agent = w.agent()
            async with running(agent):
                await wait_for(lambda: w.active(name), lambda a: a == "active")
                pid = await w.systemd.unit_property(name, "MainPID", SERVICE_IFACE)
                etcd.pause()
                try:
                    # Longer than the TTL: the presence lease is lost meanwhile.
                    await wait_for(
                        lambda: asyncio.sleep(0, agent.registered.is_set()),
                        lambda registered: not registered,
                        timeout=TTL * 4,
                        what="presence lost while etcd is paused",
                    )
                    assert await w.active(name) == "active"
                    # The agent noticed (its reads failed) and changed nothing.
                    assert agent.last_error is not None
                    assert name in agent.current
                finally:
                    etcd.resume()
                await asyncio.wait_for(agent.registered.wait(), 15)
                await wait_for(
                    lambda: w.state_of(name),
                    lambda s: s is not None and s.active_state == "active",
                    timeout=10,
                    what="state republished on the new lease",
                )
                assert await w.active(name) == "active"
                assert await w.systemd.unit_property(name, "MainPID", SERVICE_IFACE) == pid
                await unschedule_all(w, name)

    run(main)


def test_restarted_agent_adopts_running_units(
    etcd: EtcdProcess, etcd_prefix: str, agent_node: nodes.Node, unit_dir: NodeUnitDir
) -> None:
    name = "agt-adopt.service"
    body, hash = unit()

    async def main() -> None:
        async with world(etcd, etcd_prefix, agent_node, unit_dir) as w:
            await w.registry.create_unit(name, body, hash, DesiredState.LAUNCHED, False)
            await w.schedule(name, hash, DesiredState.LAUNCHED)
            # The first fleetd has its own store connection: closing it is the
            # process exit that stops its lease keepalive.
            first_registry = await EtcdRegistry.connect([etcd.endpoint], etcd_prefix)
            first = w.agent(store=first_registry)
            try:
                async with running(first):
                    await wait_for(lambda: w.active(name), lambda a: a == "active")
            finally:
                await first_registry.close()
            # Default shutdown leaves units alone and the lease to expire.
            assert await w.active(name) == "active"
            pid = await w.systemd.unit_property(name, "MainPID", SERVICE_IFACE)

            second = w.agent()
            # The old presence still holds the machine id: the new agent retries
            # (fleet's TestDetectMachineId) until its own registration succeeds.
            async with running(second):
                await wait_for(
                    lambda: asyncio.sleep(0, second.passes), lambda n: n >= 1, what="a pass"
                )
                assert second.current[name].state is DesiredState.LAUNCHED
                assert await w.systemd.unit_property(name, "MainPID", SERVICE_IFACE) == pid
                await unschedule_all(w, name)

    run(main)


def test_restarted_agent_resumes_its_presence_without_a_gap(
    etcd: EtcdProcess,
    etcd_prefix: str,
    agent_node: nodes.Node,
    unit_dir: NodeUnitDir,
    tmp_path: Path,
) -> None:
    """B8: with a lease file the new agent resumes the old lease at once instead
    of waiting (AlreadyExists) for it to expire while the engine moves units."""
    lease_file = tmp_path / "agent.lease"

    async def main() -> None:
        async with world(etcd, etcd_prefix, agent_node, unit_dir) as w:
            first_registry = await EtcdRegistry.connect([etcd.endpoint], etcd_prefix)
            first = w.agent(store=first_registry, lease_file=lease_file)
            try:
                async with running(first):
                    assert first.lease is not None
                    lease_id = first.lease.lease_id
            finally:
                await first_registry.close()
            assert lease_file.read_text().split() == [w.machine.id, f"{lease_id:x}"]

            second = w.agent(lease_file=lease_file)
            started = asyncio.get_running_loop().time()
            async with running(second):
                # Well under the TTL: no AlreadyExists backoff happened.
                assert asyncio.get_running_loop().time() - started < TTL / 2
                assert second.lease is not None
                assert second.lease.lease_id == lease_id
                assert [m.id for m in await w.registry.list_machines()] == [w.machine.id]

    run(main)


def test_shutdown_stops_units_purges_everything(
    etcd: EtcdProcess, etcd_prefix: str, agent_node: nodes.Node, unit_dir: NodeUnitDir
) -> None:
    name = "agt-purge.service"
    sidekick = "agt-purge-sidekick.service"
    body, hash = unit()
    side_body, side_hash = unit(extra=f"\n[Install]\nWantedBy={name}\n")

    async def main() -> None:
        async with world(etcd, etcd_prefix, agent_node, unit_dir) as w:
            await w.registry.create_unit(name, body, hash, DesiredState.LAUNCHED, False)
            await w.registry.create_unit(sidekick, side_body, side_hash, DesiredState.LOADED, False)
            await w.schedule(sidekick, side_hash, DesiredState.LOADED)
            await w.schedule(name, hash, DesiredState.LAUNCHED)
            agent = w.agent(shutdown_stops_units=True)
            async with running(agent):
                await wait_for(lambda: w.state_of(name), lambda s: s is not None)
                # [Install] WantedBy: the loaded sidekick starts with its target.
                await wait_for(lambda: w.active(sidekick), lambda a: a == "active")
                assert await w.systemd.unit_file_state(sidekick) == "enabled-runtime"
            assert await w.active(name) == "inactive"
            assert not list(unit_dir.host.iterdir())
            assert await w.registry.list_unit_states() == []
            assert [m.id for m in await w.registry.list_machines()] == []

    run(main)
