"""Benchmark (not a test): engine placement throughput against a private etcd.

N units over M SIMULATED machines: each simulated machine is only a presence
record (``machine/<id>``, the agent's encoding), all of them on one shared etcd
lease (one keepalive loop per simulated machine would load this very process
more than the engine does); no systemd runs. A real :class:`fleet.engine.Engine`
leads on a private etcd with default raft timings. Setup (not timed): register
the simulated machines, write N jobs with desired state ``inactive`` in batched
transactions, start the engine and wait until it leads and has run a pass.
Timed: from the first transaction that flips the units to ``launched`` until a
watch on ``schedule/`` has seen every unit placed. The same run measures the raw
sequential put rate of that etcd (one client, one put at a time), the baseline
every engine write competes with, and each size twice, with the engine's events
(B13: one ``placed`` event per placement, in the same fenced transactions) off
and on, alternating ``--repeat`` times; ``events cost`` is the drop of the
median placement rate with events on.

    .venv/bin/python bench/engine_placement.py --machines 300 --units 3000
    .venv/bin/python bench/engine_placement.py --matrix
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import pstats
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aetcd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job, Machine
from fleet.core.unitfile import UnitFile
from fleet.engine import Engine
from fleet.ports import ScheduleChanged, Scope, Topic
from fleet.registry import codec
from fleet.registry.etcd import EtcdRegistry
from fleet.registry.keys import Keys
from tests.asyncsupport import eventually

PREFIX = "/fleet-bench/"
TXN_OPS = 128
MATRIX = ((100, 1_000), (300, 3_000), (1_000, 10_000))
SIMULATED_MACHINE_TTL = 3600  # one lease for all: no simulated machine expires mid-run
METADATA_VALUES = ("a", "b", "c")
TIMEOUT = 300.0


@dataclass(frozen=True)
class Result:
    machines: int
    units: int
    seconds: float
    raw_puts_per_s: float
    passes: int
    flip_seconds: float  # of ``seconds``, spent writing the flips themselves
    events: bool = True

    @property
    def placements_per_s(self) -> float:
        return self.units / self.seconds

    @property
    def ratio(self) -> float:
        return self.placements_per_s / self.raw_puts_per_s


def _body() -> tuple[str, str]:
    unit = UnitFile.parse(
        "[Unit]\nDescription=benchmark unit\n\n[Service]\nExecStart=/bin/sleep infinity\n"
    )
    return unit.serialize(), unit.hash


async def _raw_put_rate(client: aetcd.Client, count: int) -> float:
    value = b"x" * 64
    started = time.perf_counter()
    for i in range(count):
        await client.put(f"{PREFIX}raw/{i}".encode(), value)
    return count / (time.perf_counter() - started)


async def _batched_puts(
    client: aetcd.Client, items: list[tuple[bytes, bytes]], lease: aetcd.Lease | None = None
) -> None:
    ops = client.transactions
    for start in range(0, len(items), TXN_OPS):
        chunk = items[start : start + TXN_OPS]
        puts = [ops.put(k, v, lease) for k, v in chunk]
        await client.transaction(compare=[], success=puts, failure=[])


async def _register_simulated_machines(client: aetcd.Client, count: int) -> None:
    """``count`` presence records on ONE lease that outlives the run: no simulated
    machine expires, and the bench spends no keepalive per machine (5,000 leases
    refreshed from this one process starved the engine's own lease)."""
    keys = Keys(PREFIX)
    machines = [
        Machine(
            id=f"sim-machine-{i:05d}",
            public_ip="127.0.0.1",
            metadata={"group": METADATA_VALUES[i % len(METADATA_VALUES)]},
        )
        for i in range(count)
    ]
    records = [(keys.machine(m.id), codec.encode_machine(m)) for m in machines]
    await _batched_puts(client, records, await client.lease(SIMULATED_MACHINE_TTL))


async def run_once(
    etcd: EtcdProcess, machines: int, units: int, raw_puts: int, events: bool = True
) -> Result:
    host, port = etcd.host, etcd.client_port
    keys = Keys(PREFIX)
    async with aetcd.Client(host=host, port=port) as client:
        await client.delete_prefix(PREFIX.encode())
        raw_rate = await _raw_put_rate(client, raw_puts)
        await client.delete_prefix(PREFIX.encode())

        registry = await EtcdRegistry.connect([etcd.endpoint], PREFIX)
        engine_registry = await EtcdRegistry.connect([etcd.endpoint], PREFIX)
        try:
            await _register_simulated_machines(client, machines)
            body, hash = _body()
            names = [f"bench-{i:06d}.service" for i in range(units)]
            setup = [(keys.unit(hash), codec.encode_body(body))]
            setup += [
                (keys.job(n), codec.encode_job(Job(n, hash, DesiredState.INACTIVE))) for n in names
            ]
            await _batched_puts(client, setup)

            engine = Engine(engine_registry, "bench-engine", reconcile_interval=2.0, events=events)
            engine_task = asyncio.create_task(engine.run())

            async def passes_so_far() -> int:
                return engine.statistics().passes

            try:
                await eventually(
                    passes_so_far,
                    lambda n: n >= 1,
                    timeout=TIMEOUT,
                    interval=0.01,
                    what="a first pass",
                )
                _, revision = await registry.list_changes(Scope(Topic.SCHEDULE))
                placed: set[str] = set()
                done = asyncio.Event()

                async def observe() -> None:
                    async for batch in registry.watch(Scope(Topic.SCHEDULE), revision + 1):
                        for change in batch:
                            if isinstance(change, ScheduleChanged) and change.entry is not None:
                                placed.add(change.name)
                        if len(placed) >= units:
                            done.set()
                            return

                observer = asyncio.create_task(observe())
                await asyncio.sleep(0.2)  # let the watch be created before the timed part
                passes_before = engine.statistics().passes
                flips = [
                    (keys.job(n), codec.encode_job(Job(n, hash, DesiredState.LAUNCHED)))
                    for n in names
                ]
                started = time.perf_counter()
                await _batched_puts(client, flips)
                flip_seconds = time.perf_counter() - started
                async with asyncio.timeout(TIMEOUT):
                    await done.wait()
                seconds = time.perf_counter() - started
                passes = engine.statistics().passes - passes_before
                observer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await observer
            finally:
                engine_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await engine_task
        finally:
            await engine_registry.close()
            await registry.close()
        await client.delete_prefix(PREFIX.encode())
    return Result(machines, units, seconds, raw_rate, passes, flip_seconds, events)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _print(results: list[Result]) -> None:
    header = (
        f"{'simulated machines':>18} {'units':>7} {'events':>6} {'seconds':>8} "
        f"{'placements/s':>13} {'raw puts/s':>11} {'ratio':>6} {'passes':>6} "
        f"{'flip writes s':>13}"
    )
    print(header)
    for r in results:
        print(
            f"{r.machines:>18} {r.units:>7} {'on' if r.events else 'off':>6} {r.seconds:>8.2f} "
            f"{r.placements_per_s:>13.0f} {r.raw_puts_per_s:>11.0f} {r.ratio:>6.1f} "
            f"{r.passes:>6} {r.flip_seconds:>13.2f}"
        )
    sizes = sorted({(r.machines, r.units) for r in results})
    print()
    print(f"{'simulated machines':>18} {'units':>7} {'off /s':>9} {'on /s':>9} {'events cost':>12}")
    for machines, units in sizes:
        rates = {
            on: _median(
                [
                    r.placements_per_s
                    for r in results
                    if (r.machines, r.units, r.events) == (machines, units, on)
                ]
            )
            for on in (False, True)
        }
        cost = (rates[False] - rates[True]) / rates[False] * 100
        print(f"{machines:>18} {units:>7} {rates[False]:>9.0f} {rates[True]:>9.0f} {cost:>11.1f}%")


async def main_async(args: argparse.Namespace) -> list[Result]:
    sizes = list(MATRIX) if args.matrix else [(args.machines, args.units)]
    results = []
    with EtcdProcess(fast=False) as etcd:
        for machines, units in sizes:
            for round_ in range(args.repeat):
                # Alternate which goes first, so neither always runs on a warmer etcd.
                order = (False, True) if round_ % 2 == 0 else (True, False)
                for events in order:
                    results.append(
                        await run_once(etcd, machines, units, args.raw_puts, events=events)
                    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=300, help="simulated machines")
    parser.add_argument("--units", type=int, default=3_000)
    parser.add_argument("--matrix", action="store_true", help="run " + str(MATRIX))
    parser.add_argument("--raw-puts", type=int, default=2_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per size with events off and on"
    )
    parser.add_argument("--profile", type=Path, help="write a cProfile of the run here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.profile:
        profiler = cProfile.Profile()
        results = profiler.runcall(asyncio.run, main_async(args))
        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
    else:
        results = asyncio.run(main_async(args))
    _print(results)


if __name__ == "__main__":
    main()
