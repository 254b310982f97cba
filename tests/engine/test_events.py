"""The engine's events (B13) against a real etcd, with SIMULATED machines: a lost
machine's unit gets placed -> machine-left -> unscheduled -> moved; unplaceable
units, joins and cordons are recorded; with events off nothing is."""

from __future__ import annotations

import time

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.events import EventKind, EventQuery
from fleet.core.maintenance import Cordon
from tests.asyncsupport import async_test
from tests.engine.harness import simulated_cluster, wait_until

pytestmark = pytest.mark.etcd


@async_test
async def test_a_lost_machine_shows_in_its_units_history(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("m1")
        await cluster.add_simulated_machine("m2")
        await cluster.submit("a.service", "MachineID=m1")
        await cluster.submit("b.service")
        await cluster.start_engine("e1")
        first = (await wait_until(cluster.schedule, lambda s: "b.service" in s))["b.service"][0]
        other = "m2" if first == "m1" else "m1"
        await cluster.kill_simulated_machine(first)

        async def history() -> list[tuple[str, str | None]]:
            found, _ = await cluster.registry.list_events(EventQuery(units=("b.service",)))
            return [(e.kind.value, e.machine) for e in found]

        seen = await wait_until(history, lambda h: len(h) >= 4, what="b's history")
        assert seen == [
            ("placed", first),
            ("machine-left", first),
            ("unscheduled", first),
            ("moved", other),
        ]
        found, _ = await cluster.registry.list_events(EventQuery(units=("b.service",)))
        assert "went away" in (found[2].reason or "")
        assert "least-loaded" in (found[0].reason or "")


@async_test
async def test_unplaceable_joined_and_cordoned_are_recorded(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("m1")
        await cluster.submit("c.service", "MachineMetadata=role=db")
        await cluster.start_engine("e1")

        async def kinds() -> list[str]:
            found, _ = await cluster.registry.list_events(EventQuery())
            return [e.kind.value for e in found]

        await wait_until(kinds, lambda k: "unplaceable" in k, what="an unplaceable event")
        await cluster.add_simulated_machine("m3")
        await cluster.registry.set_cordon("m3", Cordon("disk swap", time.time()))
        got = await wait_until(
            kinds, lambda k: {"machine-joined", "machine-cordoned"} <= set(k), what="m3's events"
        )
        found, _ = await cluster.registry.list_events(EventQuery(machine="m3"))
        assert [e.kind for e in found] == [EventKind.MACHINE_JOINED, EventKind.MACHINE_CORDONED]
        assert found[1].reason == "disk swap"
        # An unplaceable event is written when its reason changes (here: a second
        # machine to explain), not once per pass.
        passes = cluster.engine("e1").statistics().passes
        await wait_until(cluster.engine_passes("e1"), lambda n: n > passes + 3)
        found, _ = await cluster.registry.list_events(EventQuery(units=("c.service",)))
        reasons = [e.reason for e in found if e.kind is EventKind.UNPLACEABLE]
        assert len(reasons) == got.count("unplaceable") == 2
        assert reasons[0] != reasons[1]


@async_test
async def test_with_events_off_the_engine_writes_none(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("m1")
        await cluster.submit("d.service")
        engine = await cluster.start_engine("e1", events=False)
        await wait_until(cluster.schedule, lambda s: "d.service" in s)
        passes = engine.statistics().passes
        await wait_until(cluster.engine_passes("e1"), lambda n: n > passes + 1)
        found, _ = await cluster.registry.list_events(EventQuery())
        assert found == []
