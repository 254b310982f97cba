"""``bench/fleetctl_latency.py --cluster``: fleetctl against a real cluster of nspawn machines.

Boots its own cluster (layout ``/tmp/flb``, subnet 10.251.61, never used by
tests), creates N units from ``sleep@.service`` (``load``-ed so every agent
reports a systemd state for each; ``--launch`` starts them instead), then times
complete fleetctl processes, interleaved round by round, beside the
interpreter's floor (``python -c pass``) measured in the same run:
``version``, ``list-machines``, and ``list-units`` over the API's unix socket
(from the host, through ``/proc/<machine pid>/root/run/fleet.sock``), its TCP
socket, ``--driver=etcd`` and ``--tunnel=<ip>`` (SSH to the machine, then
``fleetctl fd-forward`` there).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from fleetctl_latency import (
    ROOT,
    TEMPLATE,
    _env,
    _fleetctl,
    _measure_processes,
    _print_processes,
)

from tests.functional.cluster import Cluster, ClusterLayout

LAYOUT = ClusterLayout(Path("/tmp/flb"), "flbn", "10.251.61", "flbbr")
API_PORT = 54728
BATCH = 250  # units per fleetctl invocation while creating them


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


def cluster_main(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root (systemd-nspawn machines)")
    cluster = Cluster.start(args.machines, LAYOUT, agent_ttl="10s")
    try:
        node = cluster.machines[0]
        print(f"cluster up in {cluster.boot_seconds:.1f}s; creating {args.units} units ...")
        created = _create_units(cluster, args.units, args.launch)
        print(f"units reported by every agent after {created:.1f}s")
        env = _env(ROOT)
        fleetctl = _fleetctl()
        key = ["--ssh-username=root", f"--ssh-identity-file={cluster.ssh_key}"]
        units = ["list-units", "--no-legend"]
        unix = f"--endpoint=unix:///proc/{node.leader_pid}/root/run/fleet.sock"
        tunnel = [f"--tunnel={node.ip}", "--strict-host-key-checking=false", *key]
        cases: list[tuple[str, list[str], dict[str, str], int | None]] = [
            ("python -c pass (floor)", [sys.executable, "-c", "pass"], env, None),
            ("version", [*fleetctl, "version"], env, None),
            ("list-machines", [*fleetctl, unix, "list-machines", "--no-legend"], env, None),
            ("list-units", [*fleetctl, unix, *units], env, args.units),
            (
                "list-units http",
                [*fleetctl, f"--endpoint=http://{node.ip}:{API_PORT}", *units],
                env,
                args.units,
            ),
            (
                "list-units etcd",
                [*fleetctl, "--driver=etcd", f"--endpoint={cluster.endpoint}", *units],
                env,
                args.units,
            ),
            ("list-units --tunnel", [*fleetctl, *tunnel, *units], env, args.units),
        ]
        timings = _measure_processes(cases, args.runs, args.warmup)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        state = "launched" if args.launch else "loaded"
        print(
            f"\n{args.machines} machines, {args.units} units {state}, {args.runs} runs each; "
            f"seconds; {os.cpu_count()} CPUs, load average {load}, "
            f"Python {sys.version.split()[0]}"
        )
        _print_processes(timings, timings[0])
    finally:
        cluster.stop()
