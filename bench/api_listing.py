"""Benchmark (not a test): paging the API's lists, snapshots beside per-page rebuilds.

A private etcd holds N units (default 1,000 then 10,000 instances of
``sleep@.service`` on 3 machines, each placed and reporting a systemd state).
Two fleet API servers (``fleet.api``, child processes on unix sockets) serve
the same keys:

* ``snapshot``: the code as it is: one etcd snapshot per listing, built once
  and sliced for every page (``fleet.api.listing``), bodies parsed once per
  content hash;
* ``rebuild``: the same code with what it replaced put back: every page builds
  the whole list again at the current revision and parses every body again
  (the baseline, measured in the same run).

Before every timed listing the bench writes one key (a machine metadata
PATCH), so each listing reads a new revision and builds its snapshot: the
numbers are those of a cluster that changes, not of a cache hit. Timed: every
page of ``/fleet/v1/units`` and ``/fleet/v1/state`` (httpx over the socket),
``fleetctl list-unit-files`` and ``list-units`` (the API driver) warm in one
process and as whole processes, and, as the floor, the raw etcd range of every
key the listing reads.

    .venv/bin/python bench/api_listing.py                       # 1,000 and 10,000 units
    .venv/bin/python bench/api_listing.py --units 1000 --runs 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleetctl_latency import _env, _fleetctl, _run  # noqa: E402

TEMPLATE = ROOT / "tests" / "fixtures" / "units" / "sleep@.service"
MACHINES = [f"{i:x}" * 32 for i in range(1, 4)]
# The targets (seconds, whole listing).
TARGETS = {1000: 0.120, 10000: 1.0}


# --- the registry's contents -----------------------------------------------------------


async def _populate(endpoint: str, prefix: str, count: int) -> None:
    from fleet import units
    from fleet.core.model import DesiredState, Machine, UnitState
    from fleet.core.unitfile import UnitFile
    from fleet.ports import ScheduleChange
    from fleet.registry.etcd import EtcdRegistry

    registry = await EtcdRegistry.connect([endpoint], prefix, request_timeout=30.0)
    try:
        template = UnitFile.parse(TEMPLATE.read_text())
        leases = [
            await registry.register_machine(Machine(m, f"10.251.63.{i + 10}"), ttl=3600)
            for i, m in enumerate(MACHINES)
        ]
        names = [f"sleep@{i}.service" for i in range(1, count + 1)]
        for first in range(0, count, 100):
            await asyncio.gather(
                *(
                    units.create_unit(registry, n, template, DesiredState.LAUNCHED)
                    for n in names[first : first + 100]
                )
            )
        leader = await registry.campaign(MACHINES[0], "bench", 3600)
        assert leader is not None
        placed = [ScheduleChange(n, MACHINES[i % 3], template.hash) for i, n in enumerate(names)]
        await registry.apply_schedule(leader, placed, {})
        for first in range(0, count, 100):
            await asyncio.gather(
                *(
                    registry.publish_unit_state(
                        leases[i % 3],
                        UnitState(n, MACHINES[i % 3], "loaded", "active", "running", template.hash),
                    )
                    for i, n in list(enumerate(names))[first : first + 100]
                )
            )
        # The leases stay: etcd keeps them (TTL 1 h) after this connection closes.
    finally:
        await registry.close()


async def _raw_range(endpoint: str, prefix: str) -> float:
    """Seconds to read every key under the prefix, 1,000 a page (the registry's page)."""
    from aetcd import rpc

    from fleet.registry.etcd import EtcdRegistry
    from fleet.registry.keys import range_end

    registry = await EtcdRegistry.connect([endpoint], prefix, request_timeout=30.0)
    try:
        start, end = registry.keys.prefix, range_end(registry.keys.prefix)
        t0 = time.perf_counter()
        revision = 0
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=1000, revision=revision)
            response = await registry.connection.call("kv", "Range", request)
            revision = revision or int(response.header.revision)
            if not response.more or not response.kvs:
                return time.perf_counter() - t0
            start = response.kvs[-1].key + b"\x00"
    finally:
        await registry.close()


# --- the servers -------------------------------------------------------------------------


def _rebuild_every_page() -> None:
    """Put back what snapshot listings replaced: each page builds the whole list at
    the current revision, and no body stays parsed."""
    from fleet.api import listing
    from fleet.api.schema import paginate
    from fleet.core import views

    async def page(self: Any, what: Any, token: Any, build: Any) -> Any:
        return paginate(await build(0), token)

    def known(self: Any, hashes: Any) -> Any:
        return {}, [], sorted(set(hashes))

    listing.Listings.page = page  # type: ignore[method-assign]
    views.ParsedBodies.known = known  # type: ignore[method-assign]


async def _serve(endpoint: str, prefix: str, path: str, mode: str) -> None:
    from fleet.api.app import create_app
    from fleet.api.server import serve
    from fleet.registry.etcd import EtcdRegistry

    if mode == "rebuild":
        _rebuild_every_page()
    registry = await EtcdRegistry.connect([endpoint], prefix, request_timeout=30.0)
    app = create_app(registry, machine_id=MACHINES[0], version="bench")
    print("ready", flush=True)
    await serve(app, unix_path=path)


class Server:
    def __init__(self, endpoint: str, prefix: str, path: str, mode: str) -> None:
        self.path, self.mode = path, mode
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", endpoint, prefix, path, mode],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(ROOT),
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise SystemExit("a benchmark API server did not start")
        deadline = time.monotonic() + 10
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=path), base_url="http://fleet", timeout=600
        )
        self._bumps = 0

    def bump(self) -> None:
        """One write: the next listing reads a new revision."""
        self._bumps += 1
        op = {"op": "add", "path": f"/{MACHINES[0]}/metadata/bench", "value": str(self._bumps)}
        assert self.client.patch("/fleet/v1/machines", json=[op]).status_code == 204

    def walk(self, resource: str, key: str) -> int:
        """Every page of one listing; how many items."""
        items, params = 0, dict[str, str]()
        while True:
            r = self.client.get(f"/fleet/v1/{resource}", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            items += len(body.get(key, []))
            if "nextPageToken" not in body:
                return items
            params = {"nextPageToken": body["nextPageToken"]}

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- measurements ------------------------------------------------------------------------


def _timed(call: Callable[[], object], runs: int, before: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        before()
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


WARM_CHILD = """
import contextlib, io, json, statistics, sys, time
import httpx
import fleetctl.cli
socket_path, machine = sys.argv[1], sys.argv[2]
args, runs = json.loads(sys.argv[3]), int(sys.argv[4])
bump = httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), base_url="http://fleet")
times = []
for i in range(runs + 1):
    op = {"op": "add", "path": f"/{machine}/metadata/warm", "value": str(i)}
    assert bump.patch("/fleet/v1/machines", json=[op]).status_code == 204
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        code = fleetctl.cli.main(args)
    times.append(time.perf_counter() - t0)
    assert code == 0, code
print(json.dumps(statistics.median(times[1:])))
"""


def _fleetctl_warm(server: Server, args: list[str], runs: int) -> float:
    argv = [sys.executable, "-c", WARM_CHILD, server.path, MACHINES[0], json.dumps(args), str(runs)]
    return float(json.loads(_run(argv, _env(ROOT))))


def _fleetctl_process(server: Server, args: list[str], runs: int) -> float:
    argv = [*_fleetctl(ROOT), *args]
    env = _env(ROOT)
    _run(argv, env)  # bytecode written, caches warm
    return _timed(lambda: _run(argv, env), runs, server.bump)


def measure(endpoint: str, tmp: Path, count: int, runs: int, baseline_runs: int) -> None:
    prefix = f"/bench-{count}/"
    started = time.monotonic()
    asyncio.run(_populate(endpoint, prefix, count))
    print(f"\n{count} units on 3 machines written in {time.monotonic() - started:.1f}s")
    raw = statistics.median(asyncio.run(_raw_range(endpoint, prefix)) for _ in range(runs))
    servers = {
        mode: Server(endpoint, prefix, str(tmp / f"{mode}-{count}.sock"), mode)
        for mode in ("snapshot", "rebuild")
    }
    rows: list[tuple[str, float, float | None]] = []
    try:
        snap, base = servers["snapshot"], servers["rebuild"]
        t0 = time.perf_counter()
        assert snap.walk("units", "units") == count
        rows.append(("/units, first listing (bodies unparsed)", time.perf_counter() - t0, None))
        for resource, key in (("units", "units"), ("state", "states")):
            mine = _timed(partial(snap.walk, resource, key), runs, snap.bump)
            theirs = _timed(partial(base.walk, resource, key), baseline_runs, base.bump)
            rows.append((f"/{resource}, every page", mine, theirs))
        # The rebuild baseline of the fleetctl rows takes minutes beyond 5,000 units.
        compare = count < 5000
        endpoint_flag = "--endpoint=unix://"
        for command in ("list-unit-files", "list-units"):
            args = [endpoint_flag + snap.path, command, "--no-legend"]
            base_args = [endpoint_flag + base.path, command, "--no-legend"]
            warm = _fleetctl_warm(base, base_args, baseline_runs) if compare else None
            rows.append((f"fleetctl {command}, warm", _fleetctl_warm(snap, args, runs), warm))
            whole = _fleetctl_process(base, base_args, baseline_runs) if compare else None
            rows.append(
                (f"fleetctl {command}, whole process", _fleetctl_process(snap, args, runs), whole)
            )
    finally:
        for server in servers.values():
            server.stop()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    target = TARGETS.get(count)
    print(
        f"{count} units, medians of {runs} runs (baseline {baseline_runs}), seconds; "
        f"{os.cpu_count()} CPUs, load average {load}"
        + (f"; target {target:g} s for the listings" if target else "")
    )
    print(f"{'':<42} {'snapshot':>9} {'rebuild':>9}")
    print(f"{'raw etcd range of the same keys (floor)':<42} {raw:9.3f}")
    for name, ours, before in rows:
        other = f"{before:9.3f}" if before is not None else ""
        print(f"{name:<42} {ours:9.3f} {other:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=0,
        help="runs of the rebuild baseline (default: --runs below 5,000 units, else 1)",
    )
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        endpoint, prefix, path, mode = args.serve
        asyncio.run(_serve(endpoint, prefix, path, mode))
        return
    from fleet.cluster.etcd import EtcdProcess

    with (
        EtcdProcess(fast=False) as etcd,
        tempfile.TemporaryDirectory(prefix="flbench-", dir="/tmp") as tmp,
    ):
        for count in args.units:
            baseline = args.baseline_runs or (args.runs if count < 5000 else 1)
            measure(etcd.endpoint, Path(tmp), count, args.runs, baseline)


if __name__ == "__main__":
    main()
