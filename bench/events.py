"""Benchmark (not a test): what events (B13) cost the engine's placement, on and off in one run.

Two measurements, each alternating events off and on ``--repeat`` times on one
private etcd with default raft timings, over SIMULATED machines (presence
records on etcd leases, no systemd), medians compared:

* ``engine``: N jobs are written already ``launched`` while no engine runs;
  timed from starting a real :class:`fleet.engine.Engine` until a watch on
  ``schedule/`` has seen every unit placed (leadership, relist, plan, the
  fenced writes and, with events on, one ``placed`` event per unit).
* ``flips``: :mod:`bench.engine_placement`'s run (the engine leads first; the
  window includes a client flipping the N jobs to ``launched``, 128 per
  transaction, while the engine places them), where the event writes compete
  with the client's for etcd.

The same run measures the raw sequential put rate of that etcd (the baseline).

    .venv/bin/python bench/events.py --machines 300 --units 3000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import time
from pathlib import Path

import aetcd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_placement import (
    PREFIX,
    TIMEOUT,
    _batched_puts,
    _body,
    _raw_put_rate,
    _register_simulated_machines,
    run_once,
)

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job
from fleet.engine import Engine
from fleet.ports import ScheduleChanged, Scope, Topic
from fleet.registry import codec
from fleet.registry.etcd import EtcdRegistry
from fleet.registry.keys import Keys


async def engine_only(etcd: EtcdProcess, machines: int, units: int, events: bool) -> float:
    """Seconds from starting the engine until every unit is placed."""
    keys = Keys(PREFIX)
    async with aetcd.Client(host=etcd.host, port=etcd.client_port) as client:
        await client.delete_prefix(PREFIX.encode())
        registry = await EtcdRegistry.connect([etcd.endpoint], PREFIX)
        engine_registry = await EtcdRegistry.connect([etcd.endpoint], PREFIX)
        try:
            await _register_simulated_machines(client, machines)
            body, hash = _body()
            names = [f"bench-{i:06d}.service" for i in range(units)]
            setup = [(keys.unit(hash), codec.encode_body(body))]
            setup += [
                (keys.job(n), codec.encode_job(Job(n, hash, DesiredState.LAUNCHED))) for n in names
            ]
            await _batched_puts(client, setup)
            _, revision = await registry.list_changes(Scope(Topic.SCHEDULE))
            placed: set[str] = set()
            done = asyncio.Event()

            async def observe() -> None:
                async for batch in registry.watch(Scope(Topic.SCHEDULE), revision + 1):
                    placed.update(
                        c.name
                        for c in batch
                        if isinstance(c, ScheduleChanged) and c.entry is not None
                    )
                    if len(placed) >= units:
                        done.set()
                        return

            observer = asyncio.create_task(observe())
            await asyncio.sleep(0.2)  # the watch exists before the timed part
            engine = Engine(engine_registry, "bench-engine", reconcile_interval=2.0, events=events)
            started = time.perf_counter()
            engine_task = asyncio.create_task(engine.run())
            try:
                async with asyncio.timeout(TIMEOUT):
                    await done.wait()
                seconds = time.perf_counter() - started
            finally:
                observer.cancel()
                engine_task.cancel()
                for task in (observer, engine_task):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            await engine_registry.close()
            await registry.close()
        await client.delete_prefix(PREFIX.encode())
    return seconds


async def main_async(args: argparse.Namespace) -> None:
    rates: dict[tuple[str, bool], list[float]] = {}
    with EtcdProcess(fast=False) as etcd:
        async with aetcd.Client(host=etcd.host, port=etcd.client_port) as client:
            raw = await _raw_put_rate(client, args.raw_puts)
            await client.delete_prefix(PREFIX.encode())
        for round_ in range(args.repeat):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            for events in order:
                seconds = await engine_only(etcd, args.machines, args.units, events)
                rates.setdefault(("engine", events), []).append(args.units / seconds)
                flips = await run_once(etcd, args.machines, args.units, 0, events=events)
                rates.setdefault(("flips", events), []).append(flips.placements_per_s)
    print(f"raw sequential puts/s: {raw:.0f}")
    print(f"{args.machines} simulated machines, {args.units} units, {args.repeat} runs each")
    print(f"{'measure':>8} {'events':>6} {'median/s':>9} {'min/s':>7} {'max/s':>7}  runs/s")
    for (measure, events), values in sorted(rates.items()):
        runs = " ".join(f"{v:.0f}" for v in values)
        print(
            f"{measure:>8} {'on' if events else 'off':>6} {statistics.median(values):>9.0f} "
            f"{min(values):>7.0f} {max(values):>7.0f}  {runs}"
        )
    for measure in ("engine", "flips"):
        off = statistics.median(rates[(measure, False)])
        on = statistics.median(rates[(measure, True)])
        print(f"events cost ({measure}): {(off - on) / off * 100:.1f}% of the median rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=300, help="simulated machines")
    parser.add_argument("--units", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--raw-puts", type=int, default=2_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
