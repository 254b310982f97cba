"""Cordons and drains driven by the engine, on a real etcd with simulated machines.

The simulated machines have simulated agents: each publishes, on its machine's
lease, an ``active`` state for every unit scheduled to it (or a failed one for
the units it is told to fail) and withdraws the states of units taken off it,
as a real agent would. The drain's promises are sampled throughout: never more
than ``max_parallel`` movable units without an active copy, none on two
machines, none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from fleet import maintenance
from fleet.cluster.etcd import EtcdProcess
from fleet.core.maintenance import Cordon, DrainPhase, MoveState
from fleet.errors import InvalidInput, NotFound
from fleet.maintenance import DrainOptions
from tests.asyncsupport import async_test
from tests.engine.harness import SimulatedAgents, SimulatedCluster, simulated_cluster, wait_until

M0, M1, M2 = ("a0" * 16, "b1" * 16, "c2" * 16)
NOW = 1_000.0

pytestmark = pytest.mark.etcd


@contextlib.asynccontextmanager
async def drained_cluster(
    etcd: EtcdProcess, prefix: str
) -> AsyncIterator[tuple[SimulatedCluster, SimulatedAgents]]:
    async with simulated_cluster(etcd, prefix) as cluster:
        for mid in (M0, M1, M2):
            await cluster.add_simulated_machine(mid, {"role": "first"} if mid == M0 else {})
        agents = SimulatedAgents(cluster)
        agents.start(M0, M1, M2)
        try:
            yield cluster, agents
        finally:
            await agents.stop()


async def place_on_m0(cluster: SimulatedCluster, names: list[str], x_fleet: str = "") -> None:
    """Submit units while only M0 takes new units, so that they all land there."""
    for mid in (M1, M2):
        await cluster.registry.set_cordon(mid, Cordon("setup", NOW))
    for name in names:
        await cluster.submit(name, x_fleet)
    await wait_until(cluster.schedule, lambda s: all(s.get(n) == [M0] for n in names))
    for mid in (M1, M2):
        await cluster.registry.set_cordon(mid, None)


async def status_of(cluster: SimulatedCluster, mid: str = M0) -> maintenance.Maintenance:
    return await maintenance.maintenance_of(cluster.registry, mid)


async def finished(cluster: SimulatedCluster, mid: str = M0) -> maintenance.Maintenance:
    def done(m: maintenance.Maintenance) -> bool:
        return m.current_status is not None and m.current_status.phase.final

    return await wait_until(lambda: status_of(cluster, mid), done, timeout=30, what="drain end")


@async_test
async def test_a_cordoned_machine_gets_nothing_new_and_keeps_what_it_runs(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with drained_cluster(etcd, etcd_prefix) as (cluster, _):
        await cluster.start_engine(M1)
        await place_on_m0(cluster, ["old.service"])
        await maintenance.cordon(cluster.registry, M0, "kernel upgrade", NOW)
        await cluster.submit("pinned.service", f"MachineID={M0}")
        await cluster.submit("new.service")
        schedule = await wait_until(cluster.schedule, lambda s: "new.service" in s)
        assert schedule["old.service"] == [M0]
        assert schedule["new.service"] != [M0]
        reasons = await wait_until(cluster.registry.list_reasons, lambda r: "pinned.service" in r)
        assert "cordon: the machine is cordoned (kernel upgrade)" in reasons["pinned.service"].text
        machines = {m.id: m for m in await cluster.registry.list_machines()}
        assert machines[M0].cordon == "kernel upgrade"
        assert machines[M1].cordon is None

        assert await maintenance.uncordon(cluster.registry, M0)
        await wait_until(cluster.schedule, lambda s: s.get("pinned.service") == [M0])
        assert not await maintenance.uncordon(cluster.registry, M0)


@async_test
async def test_a_cordon_needs_a_live_machine_and_a_one_line_reason(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with drained_cluster(etcd, etcd_prefix) as (cluster, _):
        with pytest.raises(NotFound, match="is not in the cluster"):
            await maintenance.cordon(cluster.registry, "ff" * 16, "", NOW)
        with pytest.raises(InvalidInput, match="one line"):
            await maintenance.cordon(cluster.registry, M0, "a\nb", NOW)
        with pytest.raises(InvalidInput, match="max-parallel"):
            await maintenance.drain(cluster.registry, M0, NOW, DrainOptions(max_parallel=0))
        assert (await status_of(cluster)).cordon is None  # nothing half-written


@async_test
async def test_a_drain_moves_one_unit_at_a_time_never_losing_or_doubling_one(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    names = [f"u{i}.service" for i in range(4)]
    async with drained_cluster(etcd, etcd_prefix) as (cluster, _):
        await cluster.start_engine(M1)
        await place_on_m0(cluster, names)
        await wait_until(
            lambda: cluster.registry.list_unit_states_of(names), lambda s: len(s) == len(names)
        )
        samples: list[tuple[int, int]] = []

        async def sample() -> None:
            # Sampled throughout the drain: the promise must hold at every moment.
            while True:
                states = await cluster.registry.list_unit_states_of(names)
                active = {s.name for s in states if s.active_state == "active"}
                copies = max((sum(1 for s in states if s.name == n) for n in names), default=0)
                samples.append((len(names) - len(active), copies))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        options = DrainOptions(max_parallel=1, min_healthy=0.3)
        await maintenance.drain(cluster.registry, M0, NOW, options)
        report = await finished(cluster)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        assert report.current_status is not None
        assert report.current_status.phase is DrainPhase.DONE
        assert {m.state for m in report.current_status.units.values()} == {MoveState.MOVED}
        schedule = await cluster.schedule()
        assert all(len(schedule[n]) == 1 and schedule[n] != [M0] for n in names)
        assert samples, "the sampler saw nothing"
        assert max(down for down, _ in samples) <= 1, samples
        assert max(copies for _, copies in samples) <= 1, samples


@async_test
async def test_pinned_stuck_and_machine_of_groups(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with drained_cluster(etcd, etcd_prefix) as (cluster, _):
        await cluster.start_engine(M1)
        await place_on_m0(cluster, ["app.service"])
        await cluster.submit("side.service", "MachineOf=app.service")
        await cluster.submit("pinned.service", f"MachineID={M0}")
        await cluster.submit("only.service", "MachineMetadata=role=first")
        await wait_until(
            cluster.schedule,
            lambda s: all(
                s.get(n) == [M0] for n in ("side.service", "pinned.service", "only.service")
            ),
        )
        options = DrainOptions(max_parallel=2, min_healthy=0.2)
        await maintenance.drain(cluster.registry, M0, NOW, options)
        report = await finished(cluster)
        status = report.current_status
        assert status is not None
        assert status.phase is DrainPhase.INCOMPLETE
        assert status.phase.exit_code == 2
        units = status.units
        assert units["app.service"].state is MoveState.MOVED
        assert units["side.service"].state is MoveState.MOVED
        assert units["app.service"].to == units["side.service"].to != M0
        assert units["pinned.service"].state is MoveState.PINNED
        assert "MachineID" in units["pinned.service"].detail
        assert units["only.service"].state is MoveState.STUCK
        assert "MachineMetadata" in units["only.service"].detail
        schedule = await cluster.schedule()
        assert schedule["pinned.service"] == [M0]
        assert schedule["only.service"] == [M0]


@async_test
async def test_a_unit_failing_on_its_new_machine_fails_the_drain(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with drained_cluster(etcd, etcd_prefix) as (cluster, agents):
        await cluster.start_engine(M1)
        await place_on_m0(cluster, ["bad.service", "good.service"])
        await wait_until(
            lambda: cluster.registry.list_unit_states_of(["bad.service"]), lambda s: len(s) == 1
        )
        agents.failing.add("bad.service")  # its next start (on the new machine) fails
        await maintenance.drain(cluster.registry, M0, NOW, DrainOptions(min_healthy=0.2))
        report = await finished(cluster)
        status = report.current_status
        assert status is not None
        assert status.phase is DrainPhase.FAILED
        assert status.units["bad.service"].state is MoveState.FAILED
        assert "Result=exit-code" in status.units["bad.service"].detail
        assert status.units["good.service"].state is MoveState.MOVED


@async_test
async def test_a_paused_drain_starts_no_move_and_resumes_where_it_was(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    names = [f"p{i}.service" for i in range(3)]
    async with drained_cluster(etcd, etcd_prefix) as (cluster, _):
        await cluster.start_engine(M1)
        await place_on_m0(cluster, names)
        await maintenance.drain(cluster.registry, M0, NOW, DrainOptions(min_healthy=0.5))

        def one_moved(m: maintenance.Maintenance) -> bool:
            s = m.current_status
            return s is not None and any(u.state is MoveState.MOVED for u in s.units.values())

        await wait_until(lambda: status_of(cluster), one_moved, timeout=20)
        assert await maintenance.pause_drain(cluster.registry, M0)
        paused = await wait_until(
            lambda: status_of(cluster),
            lambda m: (
                m.current_status is not None
                and m.current_status.phase is DrainPhase.PAUSED
                and not m.current_status.in_flight()
            ),
            timeout=20,
        )
        assert paused.current_status is not None
        left = [n for n in names if n not in paused.current_status.units]
        await asyncio.sleep(1.0)  # paused: sampled for a while, nothing more may move
        assert left, "the pause came too late to leave a unit unmoved"
        schedule = await cluster.schedule()
        assert all(schedule[n] == [M0] for n in left)

        again = await maintenance.drain(cluster.registry, M0, NOW + 50, DrainOptions())
        assert paused.request is not None
        assert again.started == paused.request.started  # resumed, not restarted
        report = await finished(cluster)
        assert report.current_status is not None
        assert report.current_status.phase is DrainPhase.DONE


@async_test
async def test_a_new_engine_leader_finishes_the_drain(etcd: EtcdProcess, etcd_prefix: str) -> None:
    names = [f"l{i}.service" for i in range(3)]
    async with drained_cluster(etcd, etcd_prefix) as (cluster, _):
        await cluster.start_engine(M1)
        await place_on_m0(cluster, names)
        await cluster.start_engine(M2)  # a standby
        await maintenance.drain(cluster.registry, M0, NOW, DrainOptions(min_healthy=0.5))
        await wait_until(
            lambda: status_of(cluster),
            lambda m: m.current_status is not None and bool(m.current_status.units),
        )
        await cluster.stop_engine(M1)
        report = await finished(cluster)
        assert report.current_status is not None
        assert report.current_status.phase is DrainPhase.DONE
        assert cluster.engine(M2).is_leader
        schedule = await cluster.schedule()
        assert all(len(schedule[n]) == 1 and schedule[n] != [M0] for n in names)


@async_test
async def test_uncordon_ends_a_drain(etcd: EtcdProcess, etcd_prefix: str) -> None:
    names = [f"e{i}.service" for i in range(3)]
    async with drained_cluster(etcd, etcd_prefix) as (cluster, _):
        await cluster.start_engine(M1)
        await place_on_m0(cluster, names)
        await maintenance.drain(cluster.registry, M0, NOW, DrainOptions(min_healthy=5))
        await wait_until(
            lambda: status_of(cluster),
            lambda m: m.current_status is not None and bool(m.current_status.in_flight()),
        )
        assert await maintenance.uncordon(cluster.registry, M0)
        report = await status_of(cluster)
        assert (report.cordon, report.request) == (None, None)
        await asyncio.sleep(1.0)  # sampled: with the drain ended, nothing more moves
        schedule = await cluster.schedule()
        assert sum(1 for n in names if schedule[n] == [M0]) == 2
