"""The world of the agent's logic tests: a real etcd, an in-memory systemd.

No machine is booted and nothing needs root: the agent drives
:class:`~fleet.systemd.memory.InMemorySystemd` (which passes the same contract
tests as the D-Bus adapter) and writes its unit files under ``tmp_path``. A
"simulated engine" places units by writing the schedule through the registry.
Intervals are short so that a test takes a fraction of a second; tests wait
for what they can observe (``tests.asyncsupport.eventually``), never for a
guessed time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.agent import Agent
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import Leadership, ScheduleChange
from fleet.registry.etcd import EtcdRegistry
from fleet.systemd.memory import InMemorySystemd

TTL = 2.0  # etcd's smallest lease TTL with its default election timeout
# For an agent that must notice a paused etcd within a fraction of a second.
FAST_FAILING = 0.25
MUTATING = frozenset(
    {
        "link_unit_files",
        "enable_unit_files",
        "disable_unit_files",
        "reload",
        "start_unit",
        "stop_unit",
        "reset_failed_unit",
    }
)

_machine_ids = itertools.count()


Probe = Callable[[], Awaitable[bool]]


def holds(condition: Callable[[], bool]) -> Probe:
    """A probe of a condition this process can read at once."""

    async def probe() -> bool:
        return condition()

    return probe


def unit(command: str = "/usr/bin/sleep 3000", extra: str = "") -> tuple[str, str]:
    """A unit body in canonical form and its hash."""
    parsed = UnitFile.parse(f"[Service]\nExecStart={command}\n{extra}")
    return parsed.serialize(), parsed.hash


@dataclass
class World:
    etcd: EtcdProcess
    prefix: str
    registry: EtcdRegistry
    systemd: InMemorySystemd
    machine: Machine
    units_dir: Path
    engine: Leadership
    extra_registries: list[EtcdRegistry] = field(default_factory=list)

    def agent(self, **kwargs: Any) -> Agent:
        options: dict[str, Any] = {
            "units_dir": self.units_dir,
            "ttl": TTL,
            "resync_interval": 0.5,
            "retry_interval": 0.05,
            "register_backoff": (0.05, 0.2),
            "debounce": 0.01,
        }
        options.update(kwargs)
        store = options.pop("store", self.registry)
        return Agent(store, self.systemd, self.machine, **options)

    async def own_registry(self, request_timeout: float = 1.0) -> EtcdRegistry:
        """A separate connection, as another fleetd process has (closed at the end)."""
        registry = await EtcdRegistry.connect(
            [self.etcd.endpoint], self.prefix, request_timeout=request_timeout
        )
        self.extra_registries.append(registry)
        return registry

    async def create(
        self, name: str, body: str, hash: str, *, desired: DesiredState = DesiredState.LAUNCHED
    ) -> None:
        is_global = "Global=true" in body
        await self.registry.create_unit(name, body, hash, desired, is_global)

    async def schedule(
        self, name: str, hash: str | None, desired: DesiredState = DesiredState.LAUNCHED
    ) -> None:
        change = ScheduleChange(name, self.machine.id, hash, desired)
        await self.registry.apply_schedule(self.engine, [change], {})

    async def active(self, name: str) -> str:
        return (await self.systemd.unit_states([name]))[name][1]

    def unit_is(self, name: str, active: str) -> Probe:
        """A probe: systemd reports ``name`` in ``active`` state."""

        async def probe() -> bool:
            return await self.active(name) == active

        return probe

    async def state_of(self, name: str) -> UnitState | None:
        for state in await self.registry.list_unit_states():
            if state.name == name and state.machine_id == self.machine.id:
                return state
        return None

    def published(self, name: str, accept: Callable[[UnitState | None], bool]) -> Probe:
        """A probe: the state the registry holds for ``name`` here satisfies ``accept``."""

        async def probe() -> bool:
            return accept(await self.state_of(name))

        return probe

    def mutations(self, since: int = 0) -> list[tuple[str, str]]:
        """The calls that change systemd, from index ``since`` of ``systemd.calls``."""
        return [c for c in self.systemd.calls[since:] if c[0] in MUTATING]


@asynccontextmanager
async def world(
    etcd: EtcdProcess, prefix: str, tmp_path: Path, *, metadata: dict[str, str] | None = None
) -> AsyncIterator[World]:
    registry = await EtcdRegistry.connect([etcd.endpoint], prefix)
    machine = Machine(id=f"{next(_machine_ids):032x}", metadata=metadata or {})
    w: World | None = None
    try:
        engine = await registry.campaign("simulated-engine", "1", 60)
        assert engine is not None
        w = World(etcd, prefix, registry, InMemorySystemd(), machine, tmp_path / "units", engine)
        yield w
    finally:
        for extra in w.extra_registries if w is not None else []:
            await extra.close()
        await registry.close()


@asynccontextmanager
async def running(agent: Agent, *, registered: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``agent`` until the block ends, then stop it (its errors propagate).
    The block starts once the agent is registered, unless ``registered`` is False."""
    task = asyncio.create_task(agent.run())
    try:
        if registered:
            waiting = asyncio.create_task(agent.registered.wait())
            done, _ = await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if task in done:
                await task  # it failed before registering: raise that
        yield task
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
