"""Benchmark (not a test): what a user waits for in fleetctl, beside the interpreter's floor.

Every figure is printed beside ``python -c pass`` measured in the same run (the
same interpreter and environment), so the overhead above the floor is visible.

Default (no root needed): a private etcd, 3 registered machines and N units
(default 1,000 instances of ``sleep@.service``, each placed on a machine and
reporting a systemd state), served by the real fleet API (``fleet.api``) from a
child process on a unix socket. Timed:

* whole ``fleetctl`` processes: ``version``, ``list-machines``, ``list-units``
  and ``list-unit-files`` over that socket, interleaved round by round (wall
  and CPU medians of R runs after warm-up);
* warm, in one process: the same list commands through ``fleetctl.cli.main``
  with start-up and imports already paid (round trips, decoding, rendering);
* in-process decode + render of the recorded API answers (no I/O), beside
  ``json.loads`` of the same bytes.

``--baseline-client DIR`` times a second fleetctl source tree (for example
``git archive <commit> | tar -x -C DIR``) in the same run, row by row.
``--cluster`` instead boots a real cluster of systemd-nspawn machines (root;
layout ``/tmp/flb``, subnet 10.251.61) and also times the http, etcd and
``--tunnel`` paths.

    .venv/bin/python bench/fleetctl_latency.py                      # 1,000 units, 20 runs
    .venv/bin/python bench/fleetctl_latency.py --baseline-client /tmp/before
    .venv/bin/python bench/fleetctl_latency.py --cluster --units 200 --runs 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEMPLATE = ROOT / "tests" / "fixtures" / "units" / "sleep@.service"
MACHINES = [f"{i:x}" * 32 for i in range(1, 10)]
# The targets (seconds; "floor+" is over the interpreter floor of the same run).
TARGETS = {
    "version": ("floor+", 0.015),
    "list-machines": ("", 0.070),
    "list-units": ("", 0.120),
    "list-unit-files": ("", 0.120),
}
# The Go fleetctl against the same fleetd API with 1,000 units (the yardstick).
GO_FLEETCTL = {"version": 0.016, "list-machines": 0.026, "list-units": 0.082}


@dataclass
class Timing:
    name: str
    runs: list[float] = field(default_factory=list)  # wall seconds
    cpu: list[float] = field(default_factory=list)  # the process's user + sys seconds

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def _env(client_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETCTL_", "SSH_AUTH"))}
    # Bytecode is cached as on any installed system (the warm-up runs write it).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # The client tree must win over whatever an editable install resolves.
    return {**env, "NO_COLOR": "1", "PYTHONPATH": str(client_root)}


def _fleetctl(client_root: Path = ROOT) -> list[str]:
    """What the ``fleetctl`` script of ``client_root``'s pyproject.toml runs (the
    script installed here may come from another checkout)."""
    with (client_root / "pyproject.toml").open("rb") as f:
        target = tomllib.load(f)["project"]["scripts"]["fleetctl"]
    module, _, func = target.partition(":")
    return [sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]


def _run(argv: Sequence[str], env: dict[str, str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


# --- the local API: private etcd, fleet API in a child process ---------------------------


async def _populate_and_serve(endpoint: str, prefix: str, socket_path: str, count: int) -> None:
    """Child process: write machines, units, placements and states; serve; say ready."""
    from fleet import units
    from fleet.api.app import create_app
    from fleet.api.server import serve
    from fleet.core.model import DesiredState, Machine, UnitState
    from fleet.core.unitfile import UnitFile
    from fleet.ports import ScheduleChange
    from fleet.registry.etcd import EtcdRegistry

    registry = await EtcdRegistry.connect([endpoint], prefix, request_timeout=10.0)
    # Instances of a template share its file, as fleetctl submits them.
    template = UnitFile.parse(TEMPLATE.read_text())
    machines = [
        Machine(m, f"10.251.62.{i + 10}", {"role": "bench"}) for i, m in enumerate(MACHINES[:3])
    ]
    leases = [await registry.register_machine(m, ttl=3600) for m in machines]
    made: list[tuple[str, UnitFile]] = []
    for first in range(0, count, 50):
        batch = [
            (f"sleep@{i}.service", template) for i in range(first + 1, min(first + 50, count) + 1)
        ]
        await asyncio.gather(
            *(units.create_unit(registry, n, u, DesiredState.LAUNCHED) for n, u in batch)
        )
        made.extend(batch)
    leader = await registry.campaign(MACHINES[0], "bench", 3600)
    assert leader is not None
    placed = [ScheduleChange(n, MACHINES[i % 3], u.hash) for i, (n, u) in enumerate(made)]
    await registry.apply_schedule(leader, placed, {})
    for first in range(0, count, 50):
        await asyncio.gather(
            *(
                registry.publish_unit_state(
                    leases[i % 3],
                    UnitState(
                        n,
                        MACHINES[i % 3],
                        "loaded",
                        "active",
                        "running",
                        u.hash,
                        DesiredState.LAUNCHED,
                    ),
                )
                for i, (n, u) in list(enumerate(made))[first : first + 50]
            )
        )
    app = create_app(registry, machine_id=MACHINES[0], version="bench")
    print("ready", flush=True)
    await serve(app, unix_path=socket_path)


@dataclass
class LocalApi:
    socket_path: str
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls, etcd_endpoint: str, tmp: Path, count: int) -> LocalApi:
        path = str(tmp / "fleet.sock")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", etcd_endpoint, "/bench/", path, str(count)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(ROOT),
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise SystemExit("the benchmark's API server did not start")
        deadline = time.monotonic() + 10
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return cls(path, proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- measurements ------------------------------------------------------------------------


def _measure_processes(
    cases: Sequence[tuple[str, list[str], dict[str, str], int | None]], runs: int, warmup: int
) -> list[Timing]:
    """Whole processes, interleaved round by round so drift hits every row alike."""
    for name, argv, env, rows in cases:
        for _ in range(warmup):
            out = _run(argv, env)
        if rows is not None:
            got = len([line for line in out.splitlines() if line.strip()])
            if got != rows:
                raise SystemExit(f"{name}: expected {rows} lines, got {got}")
    timings = [Timing(name) for name, *_ in cases]
    for _ in range(runs):
        for timing, (_, argv, env, _) in zip(timings, cases, strict=True):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            _run(argv, env)
            timing.runs.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            timing.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return timings


WARM_CHILD = """
import contextlib, io, json, statistics, sys, time
import fleetctl.cli
cases, runs = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for name, args in cases:
    times = []
    for _ in range(runs + 2):
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            code = fleetctl.cli.main(args)
        times.append(time.perf_counter() - t0)
        assert code == 0, (name, code)
    out[name] = statistics.median(times[2:])
print(json.dumps(out))
"""


def _measure_warm(
    cases: Sequence[tuple[str, list[str]]], env: dict[str, str], runs: int
) -> dict[str, float]:
    """The list commands with start-up and imports paid: one process, many calls."""
    argv = [sys.executable, "-c", WARM_CHILD, json.dumps(cases), str(runs)]
    return dict(json.loads(_run(argv, env)))


def _median_seconds(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _record(socket_path: str, resource: str, key: str) -> list[bytes]:
    """Every page of one listing, as the server sent it."""
    from fleetctl.drivers.http import HttpConnection

    pages: list[bytes] = []
    conn = HttpConnection.unix(socket_path, timeout=10.0)
    query = ""
    try:
        while True:
            reply = conn.request("GET", f"/fleet/v1/{resource}{query}")
            pages.append(reply.body)
            token = json.loads(reply.body).get("nextPageToken")
            if not token:
                return pages
            query = f"?nextPageToken={token}"
    finally:
        conn.close()


def _distinct_bodies(pages: list[bytes]) -> list[bytes]:
    """The same unit pages with every unit's file made unique (its Description)."""
    changed = []
    for page in pages:
        body = json.loads(page)
        for unit in body["units"]:
            for option in unit["options"]:
                if option["name"] == "Description":
                    option["value"] += f" ({unit['name']})"
        changed.append(json.dumps(body).encode())
    return changed


def _measure_decode(socket_path: str, runs: int) -> list[tuple[str, float, float]]:
    """(listing, json + decode + render seconds, json.loads seconds) of recorded answers."""
    from fleetctl import render
    from fleetctl.drivers import wire

    machine_pages = _record(socket_path, "machines", "machines")
    state_pages = _record(socket_path, "state", "states")
    unit_pages = _record(socket_path, "units", "units")

    def items(pages: list[bytes], key: str) -> list[dict[str, Any]]:
        return [item for page in pages for item in json.loads(page)[key]]

    def legend() -> render.Legend:
        machines = map(wire.machine_from_wire, items(machine_pages, "machines"))
        return render.Legend({m.id: m for m in machines})

    def units_table() -> str:
        states = [wire.unit_state_from_wire(s) for s in items(state_pages, "states")]
        return render.render_units(states, ["unit", "machine", "active", "sub"], legend())

    def unit_files_table(pages: list[bytes]) -> Callable[[], str]:
        fields = ["unit", "hash", "dstate", "state", "target"]
        return lambda: render.render_unit_files(
            wire.unit_infos_from_wire(items(pages, "units")), fields, legend()
        )

    def floor(pages: list[bytes]) -> Callable[[], object]:
        return lambda: [json.loads(page) for page in pages]

    distinct = _distinct_bodies(unit_pages)
    return [
        (
            "list-units",
            _median_seconds(units_table, runs),
            _median_seconds(floor(state_pages), runs),
        ),
        (
            "list-unit-files",
            _median_seconds(unit_files_table(unit_pages), runs),
            _median_seconds(floor(unit_pages), runs),
        ),
        (
            "list-unit-files, distinct files",
            _median_seconds(unit_files_table(distinct), runs),
            _median_seconds(floor(distinct), runs),
        ),
    ]


def _print_processes(timings: list[Timing], floor: Timing) -> None:
    """Wall and CPU medians, each also over the floor's of the same run."""
    print(
        f"{'whole process':<30} {'wall':>6} {'min':>6} {'max':>6} {'-floor':>6}"
        f" {'cpu':>6} {'-floor':>6}  target (wall)"
    )
    for t in timings:
        kind, limit = TARGETS.get(t.name.split(" [")[0], ("", None))
        verdict = ""
        if limit is not None and " [" not in t.name:
            value = t.median - floor.median if kind else t.median
            verdict = f"{kind}<= {limit:.3f} {'met' if value <= limit else 'MISSED'}"
        go = GO_FLEETCTL.get(t.name)
        if go is not None:
            verdict += f"  (Go fleetctl: {go:.3f})"
        print(
            f"{t.name:<30} {t.median:6.3f} {min(t.runs):6.3f} {max(t.runs):6.3f} "
            f"{t.median - floor.median:6.3f} {t.cpu_median:6.3f} "
            f"{t.cpu_median - floor.cpu_median:6.3f}  {verdict}"
        )


def local_main(args: argparse.Namespace) -> None:
    from fleet.cluster.etcd import EtcdProcess

    clients = [("", ROOT)]
    if args.baseline_client:
        clients.append((" [baseline]", Path(args.baseline_client).resolve()))
    with EtcdProcess() as etcd, tempfile.TemporaryDirectory(prefix="flbench-", dir="/tmp") as tmp:
        started = time.monotonic()
        api = LocalApi.start(etcd.endpoint, Path(tmp), args.units)
        try:
            print(f"{args.units} units on 3 machines served in {time.monotonic() - started:.1f}s")
            endpoint = f"--endpoint=unix://{api.socket_path}"
            commands = [
                ("list-machines", [endpoint, "list-machines", "--no-legend"], 3),
                ("list-units", [endpoint, "list-units", "--no-legend"], args.units),
                ("list-unit-files", [endpoint, "list-unit-files", "--no-legend"], args.units),
            ]
            cases: list[tuple[str, list[str], dict[str, str], int | None]] = [
                ("python -c pass (floor)", [sys.executable, "-c", "pass"], _env(ROOT), None)
            ]
            for label, root in clients:
                env = _env(root)
                fleetctl = _fleetctl(root)
                cases.append((f"version{label}", [*fleetctl, "version"], env, None))
                cases.extend((f"{n}{label}", [*fleetctl, *a], env, r) for n, a, r in commands)
            timings = _measure_processes(cases, args.runs, args.warmup)
            warm = [
                (label, _measure_warm([(n, a) for n, a, _ in commands], _env(root), args.runs))
                for label, root in clients
            ]
            decoded = _measure_decode(api.socket_path, args.runs)
        finally:
            api.stop()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n{args.units} units, {args.runs} runs each (after {args.warmup} warm-up), seconds; "
        f"{os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}"
    )
    _print_processes(timings, timings[0])
    print(f"\n{'warm (imports paid), per call':<34} {'median':>7}")
    for label, medians in warm:
        for name, seconds in medians.items():
            print(f"{name + label:<34} {seconds:7.3f}")
    print(f"\n{'decode + render, recorded answers':<34} {'median':>7} {'json.loads':>10}")
    for name, seconds, baseline in decoded:
        print(f"{name:<34} {seconds:7.3f} {baseline:10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--baseline-client", help="a second fleetctl source tree to time")
    parser.add_argument("--cluster", action="store_true", help="real nspawn machines (root)")
    parser.add_argument("--machines", type=int, default=3, help="with --cluster")
    parser.add_argument("--launch", action="store_true", help="with --cluster: start the units")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        endpoint, prefix, path, count = args.serve
        asyncio.run(_populate_and_serve(endpoint, prefix, path, int(count)))
    elif args.cluster:
        from fleetctl_cluster import cluster_main

        cluster_main(args)
    else:
        local_main(args)


if __name__ == "__main__":
    main()
