"""Every metric fleetd registers is moved by product code (feature B17).

An engine, an agent (over the in-memory systemd, which passes the systemd
contract tests) and the API run on one :class:`FleetMetrics` against a real
etcd, as fleetd composes them; the test drives them through a unit's life, an
unplaceable unit, a failed systemd call and an etcd outage in the middle of a
schedule write, sampling the registry all along. A collector that never
leaves its initial value (a counter or histogram never counted, a gauge
never non-zero) fails the test: add the product code that records it, or
remove the metric.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import Metric

from fleet import units
from fleet.agent import Agent
from fleet.api.app import create_app
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine
from fleet.core.scheduler import Plan, Snapshot, plan
from fleet.core.unitfile import UnitFile
from fleet.engine import Engine
from fleet.errors import StoreError
from fleet.metrics import FleetMetrics
from fleet.registry.etcd import EtcdRegistry
from fleet.systemd.memory import InMemorySystemd
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd

M1 = "c0ffee00" + "0" * 24
SLEEPER = UnitFile.parse("[Service]\nExecStart=/bin/sleep 1000\n")
NOWHERE = UnitFile.parse(
    "[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\nMachineID=" + "f" * 32 + "\n"
)
OUTAGE = 1.5  # seconds etcd is stopped, from inside a pass: longer than a request may take


def touched(family: Metric) -> bool:
    for sample in family.samples:
        if family.type in ("counter", "histogram"):
            if sample.name.endswith(("_total", "_count")) and sample.value > 0:
                return True
        elif sample.value != 0:
            return True
    return False


class Sampler:
    """Which families have been seen touched, polled while the test runs."""

    def __init__(self, metrics: FleetMetrics) -> None:
        self.metrics = metrics
        self.seen: set[str] = set()
        self.names = {family.name for family in metrics.registry.collect()}

    def sample(self) -> None:
        self.seen.update(f.name for f in self.metrics.registry.collect() if touched(f))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(*coroutines: object) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.ensure_future(c) for c in coroutines]  # type: ignore[call-overload]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@async_test
async def test_every_registered_metric_is_touched(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    metrics = FleetMetrics()
    sampler = Sampler(metrics)
    assert len(sampler.names) >= 20
    registry = await EtcdRegistry.connect(
        [etcd.endpoint], etcd_prefix, request_timeout=0.5, metrics=metrics
    )
    systemd = InMemorySystemd()
    agent = Agent(
        registry,
        systemd,
        Machine(M1, "10.0.0.1"),
        units_dir=tmp_path / "units",
        ttl=10.0,
        resync_interval=0.3,
        retry_interval=0.1,
        register_backoff=(0.1, 0.5),
        metrics=metrics,
    )
    outage = asyncio.Event()
    loop = asyncio.get_running_loop()

    def planner(snapshot: Snapshot) -> Plan:
        result = plan(snapshot)
        if outage.is_set() and result.place:
            # etcd stops between the plan and its write: the write fails.
            outage.clear()
            etcd.pause()
            loop.call_later(OUTAGE, etcd.resume)
        return result

    engine = Engine(
        registry, M1, reconcile_interval=0.3, lease_ttl=10.0, metrics=metrics, planner=planner
    )
    app = create_app(
        registry,
        machine_id=M1,
        version="9.9.9-test",
        ready=agent.registered.is_set,
        metrics=metrics,
    )
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fleet")
    try:
        async with running(sampler.run(), agent.run(), engine.run()):
            await eventually(lambda: _true(engine.is_leader and agent.registered.is_set()))
            # The first start fails in systemd, the retry succeeds.
            systemd.fail("start_unit", times=1)
            await units.create_unit(registry, "a.service", SLEEPER, DesiredState.LAUNCHED)
            await units.create_unit(registry, "nowhere.service", NOWHERE, DesiredState.LAUNCHED)
            await eventually(lambda: _active(registry, "a.service"), timeout=15.0)

            outage.set()
            await units.create_unit(registry, "b.service", SLEEPER, DesiredState.LAUNCHED)
            await eventually(lambda: _true(not outage.is_set()), what="the outage")
            await eventually(lambda: _active(registry, "b.service"), timeout=20.0)

            for path in ("/fleet/v1/units", "/fleet/v1/machines", "/metrics"):
                assert (await api.get(path)).status_code == 200
            await asyncio.sleep(0.5)  # a few more passes of both
            sampler.sample()
            rendered = metrics.render().decode()
    finally:
        etcd.resume()
        await api.aclose()
        await registry.close()
    never = sorted(sampler.names - sampler.seen)
    assert never == [], f"metrics never touched by product code: {never}"
    assert 'fleet_agent_action_count_total{kind="start",result="failed"} 1.0' in rendered
    assert "fleet_engine_unplaceable_units 1.0" in rendered
    assert "fleet_engine_leader 1.0" in rendered
    assert 'fleet_engine_units{desired_state="launched"} 3.0' in rendered
    assert "fleet_engine_machines 1.0" in rendered
    assert 'fleet_agent_units{active_state="active"} 2.0' in rendered
    # The engine resigned when it was stopped.
    assert "fleet_engine_leader 0.0" in metrics.render().decode()


async def _true(value: bool) -> bool:
    return value


async def _active(registry: EtcdRegistry, name: str) -> bool:
    try:
        states = await registry.list_unit_states()
    except StoreError:
        return False  # etcd stopped (the outage)
    return any(s.name == name and s.active_state == "active" for s in states)
