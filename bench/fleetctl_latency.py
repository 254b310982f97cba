"""Benchmark (not a test): wall time of fleetctl commands against a real cluster with many units.

Boots its own cluster of real systemd machines (layout ``/tmp/flb``, subnet
10.251.61, never used by tests), creates N units from ``sleep@.service``
(default: 1,000 instances, ``load``-ed so every agent reports a systemd state
for each; ``--launch`` starts them instead), then times complete fleetctl
processes the way hyperfine does: a few warm-up runs, then R runs each, median
and spread. In the same run:

* ``fleetctl version``: interpreter start-up + imports, the baseline;
* ``list-units`` over the API's unix socket (from the host, through
  ``/proc/<machine pid>/root/run/fleet.sock``);
* ``list-units`` over the API's TCP socket (``http://<ip>:54728``);
* ``list-units --driver=etcd`` against the cluster's etcd;
* ``list-units --tunnel=<ip>`` (SSH to the machine, default unix endpoint
  there through ``fleetctl fd-forward``).

    .venv/bin/python bench/fleetctl_latency.py                  # 3 machines, 1,000 units
    .venv/bin/python bench/fleetctl_latency.py --units 200 --runs 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.functional.cluster import VENV_BIN, Cluster, ClusterLayout  # noqa: E402

FLEETCTL = str(VENV_BIN / "fleetctl")
TEMPLATE = ROOT / "tests" / "fixtures" / "units" / "sleep@.service"
LAYOUT = ClusterLayout(Path("/tmp/flb"), "flbn", "10.251.61", "flbbr")
API_PORT = 54728
BATCH = 250  # units per fleetctl invocation while creating them
TARGETS = {"version": 0.150, "list-units unix": 0.250}


@dataclass(frozen=True)
class Timing:
    name: str
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.runs) if len(self.runs) > 1 else 0.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETCTL_", "SSH_AUTH"))}
    return {**env, "NO_COLOR": "1"}


def _run(argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=_env(), check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... exited {proc.returncode}: {proc.stderr}")
    return proc


def _create_units(cluster: Cluster, count: int, launch: bool) -> float:
    """Create ``count`` instances and wait until every one reports a systemd state."""
    started = time.monotonic()
    verb = "start" if launch else "load"
    names = [str(TEMPLATE.parent / f"sleep@{i}.service") for i in range(1, count + 1)]
    for first in range(0, count, BATCH):
        cluster.fleetctl(verb, "--no-block", *names[first : first + BATCH], timeout=300)
    want = "active" if launch else "inactive"

    def reported() -> bool:
        out = cluster.fleetctl("list-units", "--no-legend", "--fields", "active").stdout
        return out.split().count(want) == count

    cluster.wait_for(reported, timeout=600, interval=1.0, what=f"{count} units {want}")
    return time.monotonic() - started


def _measure(name: str, argv: Sequence[str], runs: int, warmup: int, rows: int | None) -> Timing:
    for _ in range(warmup):
        proc = _run(argv)
    if rows is not None:
        got = len([line for line in proc.stdout.splitlines() if line.strip()])
        if got != rows:
            raise SystemExit(f"{name}: expected {rows} rows, got {got}")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        _run(argv)
        times.append(time.perf_counter() - t0)
    return Timing(name, times)


def _print(timings: list[Timing], units: int, machines: int, launch: bool) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n{machines} machines, {units} units {'launched' if launch else 'loaded'}, "
        f"{len(timings[0].runs)} runs each (after warm-up); seconds; "
        f"{os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}"
    )
    print(f"{'command':<24} {'median':>7} {'mean':>7} {'± sd':>7} {'min':>7} {'max':>7}  target")
    for t in timings:
        target = TARGETS.get(t.name)
        verdict = ""
        if target is not None:
            verdict = f"<= {target:.3f} {'met' if t.median <= target else 'MISSED'}"
        print(
            f"{t.name:<24} {t.median:7.3f} {statistics.fmean(t.runs):7.3f} {t.stdev:7.3f} "
            f"{min(t.runs):7.3f} {max(t.runs):7.3f}  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--launch", action="store_true", help="start the units, not just load")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (systemd-nspawn machines)")

    cluster = Cluster.start(args.machines, LAYOUT, agent_ttl="10s")
    try:
        node = cluster.machines[0]
        print(f"cluster up in {cluster.boot_seconds:.1f}s; creating {args.units} units ...")
        created = _create_units(cluster, args.units, args.launch)
        print(f"units reported by every agent after {created:.1f}s")
        key = ["--ssh-username=root", f"--ssh-identity-file={cluster.ssh_key}"]
        list_units = ["list-units", "--no-legend"]
        etcd = ["--driver=etcd", f"--endpoint={cluster.endpoint}"]
        unix = f"--endpoint=unix:///proc/{node.leader_pid}/root/run/fleet.sock"
        cases = [
            ("version", [FLEETCTL, "version"], None),
            ("list-units unix", [FLEETCTL, unix, *list_units], args.units),
            (
                "list-units http",
                [FLEETCTL, f"--endpoint=http://{node.ip}:{API_PORT}", *list_units],
                args.units,
            ),
            ("list-units etcd", [FLEETCTL, *etcd, *list_units], args.units),
            (
                "list-units --tunnel",
                [
                    FLEETCTL,
                    f"--tunnel={node.ip}",
                    "--strict-host-key-checking=false",
                    *key,
                    *list_units,
                ],
                args.units,
            ),
        ]
        timings = [_measure(n, argv, args.runs, args.warmup, rows) for n, argv, rows in cases]
        _print(timings, args.units, args.machines, args.launch)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
