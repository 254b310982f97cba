"""A small cluster for engine tests: engines, simulated machines and units on one etcd.

Also used by ``bench/drain.py``: :class:`SimulatedAgents` gives simulated machines
a simulated agent each (the test and the benchmark share one definition).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.requirements import parse_requirements
from fleet.core.unitfile import UnitFile
from fleet.engine import Engine
from fleet.engine.campaign import ENGINE_VERSION
from fleet.metrics import FleetMetrics
from fleet.ports import MachineLease
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import eventually

T = TypeVar("T")

RECONCILE = 0.2
LEASE_TTL = 1.0


def unit_body(x_fleet: str = "", description: str = "test unit") -> tuple[str, str]:
    """(canonical body, hash) of a service unit with an optional [X-Fleet] section."""
    text = f"[Unit]\nDescription={description}\n\n[Service]\nExecStart=/bin/sleep 1d\n"
    if x_fleet:
        text += f"\n[X-Fleet]\n{x_fleet}\n"
    unit = UnitFile.parse(text)
    return unit.serialize(), unit.hash


@dataclass
class SimulatedCluster:
    """Registries, engines and simulated machines sharing one etcd key prefix."""

    etcd: EtcdProcess
    prefix: str
    registry: EtcdRegistry
    _registries: list[EtcdRegistry] = field(default_factory=list)
    _engines: dict[str, tuple[Engine, asyncio.Task[None], EtcdRegistry]] = field(
        default_factory=dict
    )
    machine_leases: dict[str, tuple[MachineLease, EtcdRegistry]] = field(default_factory=dict)

    async def new_registry(self, metrics: FleetMetrics | None = None) -> EtcdRegistry:
        registry = await EtcdRegistry.connect([self.etcd.endpoint], self.prefix, metrics=metrics)
        self._registries.append(registry)
        return registry

    # --- simulated machines ---------------------------------------------------------

    async def add_simulated_machine(
        self, machine_id: str, metadata: Mapping[str, str] | None = None, ttl: float = LEASE_TTL
    ) -> None:
        """A presence record on its own lease, kept alive by its own connection (so
        closing that connection is this machine's death)."""
        registry = await self.new_registry()
        machine = Machine(id=machine_id, public_ip="127.0.0.1", metadata=dict(metadata or {}))
        lease = await registry.register_machine(machine, ttl)
        self.machine_leases[machine_id] = (lease, registry)

    async def kill_simulated_machine(self, machine_id: str) -> None:
        """Stop refreshing its lease: etcd expires it after the TTL (no revoke)."""
        _, registry = self.machine_leases.pop(machine_id)
        await registry.close()
        self._registries.remove(registry)

    # --- units ----------------------------------------------------------------------

    async def submit(
        self, name: str, x_fleet: str = "", desired: DesiredState = DesiredState.LAUNCHED
    ) -> str:
        body, hash = unit_body(x_fleet)
        is_global = parse_requirements(name, UnitFile.parse(body)).is_global
        await self.registry.create_unit(name, body, hash, desired, is_global)
        return hash

    async def schedule(self) -> dict[str, list[str]]:
        """unit name -> every machine it is scheduled to (normally one)."""
        result: dict[str, list[str]] = {}
        entries = await self.registry.list_schedule_entries()
        for machine_id, units in entries.items():
            for name in units:
                result.setdefault(name, []).append(machine_id)
        return {name: sorted(machines) for name, machines in sorted(result.items())}

    # --- engines --------------------------------------------------------------------

    async def start_engine(
        self,
        machine_id: str,
        metrics: FleetMetrics | None = None,
        *,
        watches: bool = True,
        lease_ttl: float = LEASE_TTL,
        engine_version: int = ENGINE_VERSION,
        machine_grace: float = 0.0,
        registry_metrics: FleetMetrics | None = None,
        events: bool = True,
    ) -> Engine:
        registry = await self.new_registry(registry_metrics)
        engine = Engine(
            registry,
            machine_id,
            reconcile_interval=RECONCILE,
            lease_ttl=lease_ttl,
            engine_version=engine_version,
            machine_grace=machine_grace,
            metrics=metrics,
            watches=watches,
            events=events,
        )
        task = asyncio.create_task(engine.run(), name=f"engine-{machine_id}")
        self._engines[machine_id] = (engine, task, registry)
        return engine

    def engine(self, machine_id: str) -> Engine:
        return self._engines[machine_id][0]

    def engine_passes(self, machine_id: str) -> Callable[[], Awaitable[int]]:
        """A probe: how many reconcile passes this engine has run while leading."""
        engine = self.engine(machine_id)

        async def passes() -> int:
            return engine.statistics().passes

        return passes

    async def stop_engine(self, machine_id: str) -> None:
        _, task, _ = self._engines.pop(machine_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        for machine_id in list(self._engines):
            await self.stop_engine(machine_id)
        for registry in self._registries:
            await registry.close()
        await self.registry.close()


class SimulatedAgents:
    """Per simulated machine, a task mirroring its schedule into published states.

    Each task reads its machine's schedule every ``poll`` seconds, withdraws the
    states of units taken off it, and publishes, on the machine's lease, an
    ``active`` state (a failed one for a name in ``failing``) for each unit new to
    it, one at a time, ``delay`` seconds apiece (the time a start takes).
    """

    def __init__(self, cluster: SimulatedCluster, delay: float = 0.1, poll: float = 0.05) -> None:
        self.cluster = cluster
        self.delay = delay
        self.poll = poll
        self.failing: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, *machine_ids: str) -> None:
        for mid in machine_ids:
            self._tasks[mid] = asyncio.create_task(self._mirror(mid), name=f"agent-{mid}")

    async def _mirror(self, mid: str) -> None:
        lease, registry = self.cluster.machine_leases[mid]
        published: set[str] = set()
        while True:
            schedule = await registry.machine_schedule(mid)
            for name in published - schedule.keys():
                await registry.delete_unit_state(name, mid)
            published &= schedule.keys()
            for name, job in schedule.items():
                if name in published:
                    continue
                await asyncio.sleep(self.delay)  # the time a start takes
                failed = name in self.failing
                state = UnitState(
                    name,
                    mid,
                    "loaded",
                    "failed" if failed else "active",
                    "failed" if failed else "running",
                    job.hash,
                    DesiredState.LAUNCHED,
                    result="exit-code" if failed else "success",
                    start_result="failed" if failed else "done",
                )
                await registry.publish_unit_state(lease, state)
                published.add(name)
            await asyncio.sleep(self.poll)

    async def stop(self, *machine_ids: str) -> None:
        """Stop the agents of ``machine_ids`` (of every machine if none is named)."""
        tasks = [self._tasks.pop(mid) for mid in machine_ids or list(self._tasks)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def simulated_cluster(etcd: EtcdProcess, prefix: str) -> AsyncIterator[SimulatedCluster]:
    registry = await EtcdRegistry.connect([etcd.endpoint], prefix)
    cluster = SimulatedCluster(etcd, prefix, registry)
    try:
        yield cluster
    finally:
        await cluster.close()


# ASYNC109: the timeout goes to eventually's deadline (see there).
async def wait_until(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], bool],
    timeout: float = 10.0,  # noqa: ASYNC109
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``condition`` holds on its value; return that value."""
    return await eventually(probe, condition, timeout=timeout, interval=0.05, what=what)
