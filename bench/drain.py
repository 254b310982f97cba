"""Benchmark (not a test): how long an engine-driven drain takes, beside a machine kill.

A real :class:`fleet.engine.Engine` leads on a private etcd with default raft
timings over M SIMULATED machines with SIMULATED agents (no systemd runs): each
simulated machine is a presence record on its own etcd lease, and its simulated
agent (``tests.engine.harness.SimulatedAgents``) polls the machine's schedule,
withdraws the states of units taken off it and publishes an ``active`` state,
on the machine's lease, for each unit new to it, one at a time after a fixed
simulated start delay. N units are placed on one machine (the others cordoned
meanwhile, then uncordoned) and run there before anything is timed.

Timed, each on a fresh key prefix with the same setup:

* ``drain`` with ``--max-parallel 1`` and ``5`` (``min_healthy=0``): from the
  drain request until the engine writes phase ``done``; also when a poller
  first saw every unit active on another machine;
* the baseline, ``kill``: the machine's simulated agent stops and its lease is
  no longer refreshed (it expires after the same agent TTL); until a poller sees
  every unit active elsewhere. Of that, the time until the machine's presence
  record is gone (detection, about the TTL) is reported separately, and the rest
  (rescheduling and restarting) beside it.

    .venv/bin/python bench/drain.py
    .venv/bin/python bench/drain.py --machines 6 --units 100 --ttl 5 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aetcd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet import maintenance
from fleet.cluster.etcd import EtcdProcess
from fleet.core.maintenance import Cordon, DrainPhase, MoveState
from fleet.engine import Engine
from fleet.maintenance import DrainOptions
from fleet.registry.etcd import EtcdRegistry
from tests.engine.harness import RECONCILE, SimulatedAgents, SimulatedCluster, simulated_cluster
from tests.engine.harness import wait_until as harness_wait_until

PREFIX = "/fleet-bench-drain/"
ENGINE_ID = "bench-engine"
POLL = 0.02  # seconds between the benchmark's own probes (the timing resolution)
SETUP_TIMEOUT = 120.0
TIMEOUT = 300.0


@dataclass(frozen=True)
class Conditions:
    machines: int
    units: int
    ttl: float
    agent_delay: float
    agent_poll: float
    reconcile: float = RECONCILE


@dataclass(frozen=True)
class DrainResult:
    max_parallel: int
    seconds: float  # request -> phase done
    all_elsewhere: float  # request -> every unit seen active on another machine
    moves: int
    passes: int

    @property
    def per_move(self) -> float:
        return self.seconds / self.moves

    @property
    def per_round(self) -> float:
        """Seconds per round of ``max_parallel`` moves."""
        return self.seconds / -(-self.moves // self.max_parallel)


@dataclass(frozen=True)
class KillResult:
    seconds: float  # kill -> every unit seen active on another machine
    detection: float  # kill -> the machine's presence record gone
    passes: int

    @property
    def after_detection(self) -> float:
        return self.seconds - self.detection


def machine_ids(count: int) -> list[str]:
    return [f"{0xB0 + i:02x}" * 16 for i in range(count)]


async def _poll(what: str, check: Callable[[], Awaitable[bool]]) -> float:
    """perf_counter() seconds at which ``check`` first returned True."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                if await check():
                    return time.perf_counter()
                await asyncio.sleep(POLL)
    except TimeoutError:
        raise SystemExit(f"gave up waiting for {what} after {TIMEOUT:g} s") from None


def all_active_elsewhere(
    registry: EtcdRegistry, names: Sequence[str], drained: str
) -> Callable[[], Awaitable[bool]]:
    """A probe: every unit has an ``active`` state published by another machine."""

    async def check() -> bool:
        states = await registry.list_unit_states_of(names)
        active = {s.name for s in states if s.machine_id != drained and s.active_state == "active"}
        return len(active) == len(names)

    return check


@contextlib.asynccontextmanager
async def prepared(
    etcd: EtcdProcess, prefix: str, c: Conditions
) -> AsyncIterator[tuple[SimulatedCluster, SimulatedAgents, Engine, list[str], str]]:
    """The cluster, its agents and engine, the unit names and the loaded machine."""
    ids = machine_ids(c.machines)
    drained, others = ids[0], ids[1:]
    names = [f"drain-{i:04d}.service" for i in range(c.units)]
    async with simulated_cluster(etcd, prefix) as cluster:
        for mid in ids:
            await cluster.add_simulated_machine(mid, ttl=c.ttl)
        agents = SimulatedAgents(cluster, delay=c.agent_delay, poll=c.agent_poll)
        agents.start(*ids)
        try:
            engine = await cluster.start_engine(ENGINE_ID)
            await harness_wait_until(
                cluster.engine_passes(ENGINE_ID), lambda n: n >= 1, SETUP_TIMEOUT, "a first pass"
            )
            for mid in others:
                await cluster.registry.set_cordon(mid, Cordon("setup", time.time()))
            for name in names:
                await cluster.submit(name)
            await harness_wait_until(
                cluster.schedule,
                lambda s: all(s.get(n) == [drained] for n in names),
                SETUP_TIMEOUT,
                "every unit on the loaded machine",
            )
            for mid in others:
                await cluster.registry.set_cordon(mid, None)
            await harness_wait_until(
                lambda: cluster.registry.list_unit_states_of(names),
                lambda states: sum(s.active_state == "active" for s in states) == len(names),
                SETUP_TIMEOUT,
                "every unit active on the loaded machine",
            )
            yield cluster, agents, engine, names, drained
        finally:
            await agents.stop()


async def run_drain(
    etcd: EtcdProcess, prefix: str, c: Conditions, max_parallel: int
) -> DrainResult:
    async with prepared(etcd, prefix, c) as (cluster, _, engine, names, drained):
        elsewhere = all_active_elsewhere(cluster.registry, names, drained)

        async def finished() -> bool:
            m = await maintenance.maintenance_of(cluster.registry, drained)
            return m.current_status is not None and m.current_status.phase.final

        passes = engine.statistics().passes
        started = time.perf_counter()
        await maintenance.drain(
            cluster.registry, drained, time.time(), DrainOptions(max_parallel, min_healthy=0.0)
        )
        moved_at, done_at = await asyncio.gather(
            _poll("every unit elsewhere", elsewhere), _poll("the drain's end", finished)
        )
        passes = engine.statistics().passes - passes
        status = (await maintenance.maintenance_of(cluster.registry, drained)).current_status
        assert status is not None
        moved = sum(1 for m in status.units.values() if m.state is MoveState.MOVED)
        if status.phase is not DrainPhase.DONE or moved != len(names):
            raise SystemExit(f"drain ended {status.phase} ({status.detail}), not done")
        return DrainResult(max_parallel, done_at - started, moved_at - started, moved, passes)


async def run_kill(etcd: EtcdProcess, prefix: str, c: Conditions) -> KillResult:
    async with prepared(etcd, prefix, c) as (cluster, agents, engine, names, drained):
        elsewhere = all_active_elsewhere(cluster.registry, names, drained)

        async def gone() -> bool:
            return all(m.id != drained for m in await cluster.registry.list_machines())

        await agents.stop(drained)
        passes = engine.statistics().passes
        started = time.perf_counter()
        await cluster.kill_simulated_machine(drained)
        gone_at, moved_at = await asyncio.gather(
            _poll("the machine gone", gone), _poll("every unit elsewhere", elsewhere)
        )
        passes = engine.statistics().passes - passes
        return KillResult(moved_at - started, gone_at - started, passes)


async def _clean(etcd: EtcdProcess, prefix: str) -> None:
    async with aetcd.Client(host=etcd.host, port=etcd.client_port) as client:
        await client.delete_prefix(prefix.encode())


def _print(c: Conditions, results: list[tuple[list[DrainResult], KillResult]]) -> None:
    print(
        f"conditions: {c.machines} SIMULATED machines with SIMULATED agents (no systemd), "
        f"{c.units} units on the drained machine, agent TTL {c.ttl:g} s, simulated start "
        f"delay {c.agent_delay * 1000:.0f} ms (one unit at a time per machine), agent poll "
        f"{c.agent_poll * 1000:.0f} ms, engine reconcile interval {c.reconcile:g} s, "
        f"min_healthy 0, probe resolution {POLL * 1000:.0f} ms"
    )
    print(
        f"{'run':>3} {'how':<16} {'seconds':>8} {'all elsewhere s':>15} {'detection s':>11} "
        f"{'after detect s':>14} {'s/move':>7} {'s/round':>7} {'passes':>6}"
    )
    for run, (drains, kill) in enumerate(results, 1):
        for d in drains:
            how = f"drain parallel {d.max_parallel}"
            print(
                f"{run:>3} {how:<16} {d.seconds:>8.2f} {d.all_elsewhere:>15.2f} {'-':>11} "
                f"{'-':>14} {d.per_move:>7.3f} {d.per_round:>7.3f} {d.passes:>6}"
            )
        print(
            f"{run:>3} {'kill (baseline)':<16} {kill.seconds:>8.2f} {kill.seconds:>15.2f} "
            f"{kill.detection:>11.2f} {kill.after_detection:>14.2f} "
            f"{kill.seconds / c.units:>7.3f} {'-':>7} {kill.passes:>6}"
        )


async def main_async(args: argparse.Namespace) -> list[tuple[list[DrainResult], KillResult]]:
    c = Conditions(args.machines, args.units, args.ttl, args.agent_delay, args.agent_poll)
    results = []
    with EtcdProcess(fast=False) as etcd:
        for run in range(args.runs):
            drains = []
            for max_parallel in args.max_parallel:
                prefix = f"{PREFIX}{run}-drain-{max_parallel}/"
                drains.append(await run_drain(etcd, prefix, c, max_parallel))
                await _clean(etcd, prefix)
            prefix = f"{PREFIX}{run}-kill/"
            kill = await run_kill(etcd, prefix, c)
            await _clean(etcd, prefix)
            results.append((drains, kill))
    _print(c, results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=5, help="simulated machines (>= 2)")
    parser.add_argument("--units", type=int, default=100, help="units on the drained machine")
    parser.add_argument("--ttl", type=float, default=5.0, help="simulated agent TTL, seconds")
    parser.add_argument("--agent-delay", type=float, default=0.05, help="simulated start, s")
    parser.add_argument("--agent-poll", type=float, default=0.05, help="agent schedule poll, s")
    parser.add_argument(
        "--max-parallel", type=int, nargs="+", default=[1, 5], help="drains to time"
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.machines < 2 or args.units < 1 or args.runs < 1:
        parser.error("needs --machines >= 2, --units >= 1 and --runs >= 1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
