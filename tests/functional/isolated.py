"""Private clusters for the scenarios that break machines, and the API-side probes they use.

The dynamics and daemon scenarios kill, replace and reconfigure machines, so
each gets a fresh cluster. :func:`private_clusters` hands them out on layouts
(state dir, name prefix, /24, bridge) that no other test suite uses, so these
files can run next to the session cluster and other suites' clusters on the
same host. The probes read the cluster the way fleet's harness did: fleetctl
against one machine's HTTP API, and systemd's properties inside a machine.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fleet.cluster import nodes
from tests.functional.cluster import VENV_BIN, Cluster, ClusterLayout

API_PORT = 54728  # fleet-tcp.socket in every machine (fleet's functional harness port)
FLEETCTL = str(VENV_BIN / "fleetctl")
# Consecutive tests take different slots: a machine name is not reused right
# after its teardown.
_counters: dict[str, itertools.count[int]] = {}


def private_clusters(
    base: str, subnet_octet: int, slots: int = 8
) -> Iterator[Callable[..., Cluster]]:
    """Generator body of a fixture: ``make(n, **Cluster.start options)``.

    ``base`` (2-4 letters) names state dirs, machines and bridges;
    ``10.251.<subnet_octet + slot>.0/24`` are the subnets. Every cluster made
    is removed when the test ends.
    """
    counter = _counters.setdefault(base, itertools.count())
    made: list[Cluster] = []

    def make(count: int, **options: Any) -> Cluster:
        slot = next(counter) % slots
        name = f"{base}{slot}"
        layout = ClusterLayout(
            state_dir=Path(f"/tmp/{name}"),
            prefix=f"{name}n",
            subnet=f"10.251.{subnet_octet + slot}",
            bridge=f"{name}br",
        )
        cluster = Cluster.start(count, layout, **options)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop()


def api_fleetctl(
    node: nodes.Node, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """fleetctl on the host against ``node``'s TCP API (fleet's harness did exactly this)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")}
    return subprocess.run(
        [FLEETCTL, f"--endpoint=http://{node.ip}:{API_PORT}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "NO_COLOR": "1"},
        check=False,
    )


def machine_ids(cluster: Cluster, via: nodes.Node | None = None) -> list[str]:
    """``list-machines --no-legend --full --fields machine`` (through ``via``'s API if given)."""
    args = ("list-machines", "--no-legend", "--full", "--fields", "machine")
    proc = api_fleetctl(via, *args) if via is not None else cluster.fleetctl(*args)
    assert proc.returncode == 0, f"list-machines exited {proc.returncode}: {proc.stderr}"
    return sorted(line.strip() for line in proc.stdout.splitlines() if line.strip())


def unit_property(cluster: Cluster, node: nodes.Node, unit: str, prop: str) -> str:
    """One property of ``unit`` as the machine's systemd sees it."""
    proc = cluster.systemctl(node, "show", "-p", prop, "--value", unit)
    assert proc.returncode == 0, f"systemctl show {unit} on {node.name}: {proc.stderr}"
    return proc.stdout.strip()


def journal(cluster: Cluster, node: nodes.Node, *match: str) -> str:
    """The machine's journal (volatile: since boot), as message text."""
    proc = cluster.exec(node, ["journalctl", "--no-pager", "-o", "cat", *match])
    assert proc.returncode == 0, f"journalctl on {node.name}: {proc.stderr}"
    return proc.stdout
