"""Benchmark (not a test): what a user of a real cluster waits for, and what fleetd costs.

Boots its own cluster of real systemd machines (systemd-nspawn, etcd on a host
bridge, fleetd in every machine: the same code as ``fleet-cluster up``) on a
layout no test uses, then measures:

1. start latency: ``fleetctl start --no-block <unit>`` (etcd driver, on the host)
   until systemd says ``ActiveState=active`` for that unit on whichever machine
   got it. Observed over D-Bus, ``ListUnitsByNames`` on every machine's system
   bus every 10 ms, NOT through the published unit states (those add the
   agent's publish and the client's poll). Reported from before fleetctl is
   spawned (what a user waits for, including fleetctl's own start-up) and from
   the moment fleetctl returned (the cluster's share). Units are started one
   after another and keep running, so the load grows to N.
2. fleetd RSS: ``VmRSS`` of fleetd's MainPID in every machine, with 0 units and
   with the full load.
3. failover: ``Cluster.kill`` (SIGKILL of every process of a machine that is not
   the engine leader: power loss, no deregistration) until every unit that ran
   there is ``active`` (D-Bus) on a surviving machine. The killed machine is
   booted again before the next repetition.

    .venv/bin/python bench/cluster_latency.py                 # 3 machines, 50 + 50 units
    .venv/bin/python bench/cluster_latency.py --units 50 --load 100 --failovers 5

Root only. Leaves no machine, bridge or etcd behind.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet.cluster import nodes
from fleet.registry.etcd import EtcdRegistry
from fleet.systemd.dbus import SystemdManager
from tests.functional.cluster import Cluster, ClusterLayout

LAYOUT = ClusterLayout(Path("/tmp/fbench"), "fbn", "10.251.230", "fbenchbr")
TEMPLATE = """[Unit]
Description=latency probe %i

[Service]
ExecStart=/bin/sleep infinity
"""
POLL = 0.01


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with 50 samples p99 is the maximum."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


class Observer:
    """systemd's view of every machine, over each machine's own system bus."""

    def __init__(self) -> None:
        self.buses: dict[str, SystemdManager] = {}

    async def connect(self, machines: list[nodes.Node]) -> None:
        for node in machines:
            old = self.buses.pop(node.machine_id, None)
            if old is not None:
                old.close()
            self.buses[node.machine_id] = await SystemdManager().connect(node.bus)

    def drop(self, machine_id: str) -> None:
        manager = self.buses.pop(machine_id, None)
        if manager is not None:
            manager.close()

    async def active_on(self, names: list[str]) -> dict[str, str]:
        """unit -> machine id, for every unit systemd reports active somewhere."""
        found: dict[str, str] = {}
        for machine_id, manager in self.buses.items():
            for name, (_load, active, _sub) in (await manager.unit_states(names)).items():
                if active == "active":
                    found[name] = machine_id
        return found

    # ASYNC109: each call has its own deadline, and hitting it names the units still missing.
    async def wait_active(
        self,
        names: list[str],
        timeout: float = 60,  # noqa: ASYNC109
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.active_on(names)
            if len(found) == len(names):
                return found
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(found))
                raise SystemExit(f"not active within {timeout}s: {missing[:5]}...")
            await asyncio.sleep(POLL)

    def close(self) -> None:
        for manager in self.buses.values():
            manager.close()
        self.buses.clear()


def fleetd_rss_kib(cluster: Cluster, node: nodes.Node) -> int:
    script = "grep VmRSS /proc/$(systemctl show -p MainPID --value fleet)/status"
    out = cluster.exec(node, ["sh", "-c", script], check=True).stdout
    return int(out.split()[1])


async def leader_of(cluster: Cluster) -> str:
    registry = await EtcdRegistry.connect([cluster.endpoint], cluster.config.key_prefix)
    try:
        leader = await registry.get_leader()
    finally:
        await registry.close()
    if leader is None:
        raise SystemExit("no engine leader")
    return leader[0]


async def measure(args: argparse.Namespace, cluster: Cluster, unit_dir: Path) -> None:
    observer = Observer()
    await observer.connect(cluster.machines)
    try:
        machines = cluster.machines
        print(
            f"cluster: {len(machines)} machines, agent_ttl={args.agent_ttl}, "
            f"booted and registered in {cluster.boot_seconds:.2f}s"
        )
        rss_idle = {m.name: fleetd_rss_kib(cluster, m) for m in machines}

        # 1. start latency, one unit at a time, load growing to --units.
        total, after_cli = [], []
        for i in range(1, args.units + 1):
            name = f"probe@{i}.service"
            started = time.monotonic()
            await asyncio.to_thread(cluster.fleetctl, "start", "--no-block", str(unit_dir / name))
            returned = time.monotonic()
            await observer.wait_active([name])
            done = time.monotonic()
            total.append(done - started)
            after_cli.append(done - returned)
        print(f"start latency over {args.units} units (fleetctl start --no-block -> active):")
        for label, samples in (("end to end", total), ("after fleetctl returned", after_cli)):
            print(
                f"  {label:24s} p50 {percentile(samples, 50) * 1000:6.0f} ms  "
                f"p99 {percentile(samples, 99) * 1000:6.0f} ms  "
                f"mean {statistics.fmean(samples) * 1000:6.0f} ms"
            )

        # 2. RSS with the full load.
        extra = [f"probe@{i}.service" for i in range(args.units + 1, args.load + 1)]
        if extra:
            await asyncio.to_thread(
                cluster.fleetctl, "start", "--no-block", *(str(unit_dir / n) for n in extra)
            )
        names = [f"probe@{i}.service" for i in range(1, args.load + 1)]
        placed = await observer.wait_active(names, timeout=120)
        per_machine = {
            m.name: sum(1 for v in placed.values() if v == m.machine_id) for m in machines
        }
        print(f"fleetd VmRSS (KiB), idle -> with {args.load} units (units on that machine):")
        for node in machines:
            print(
                f"  {node.name}: {rss_idle[node.name]} -> {fleetd_rss_kib(cluster, node)} "
                f"({per_machine[node.name]} units)"
            )

        # 3. failover: kill a non-leader machine, wait for its units elsewhere.
        failovers: list[tuple[float, int]] = []
        for rep in range(args.failovers):
            leader = await leader_of(cluster)
            placed = await observer.active_on(names)
            victims = [m for m in cluster.machines if m.machine_id != leader]
            victim = max(
                victims, key=lambda m: sum(1 for v in placed.values() if v == m.machine_id)
            )
            moving = sorted(n for n, m in placed.items() if m == victim.machine_id)
            observer.drop(victim.machine_id)
            killed = time.monotonic()
            await asyncio.to_thread(cluster.kill, victim)
            await observer.wait_active(moving, timeout=60)
            failovers.append((time.monotonic() - killed, len(moving)))
            print(
                f"  failover {rep + 1}: {victim.name} killed, {len(moving)} units active "
                f"elsewhere after {failovers[-1][0]:.2f}s"
            )
            await asyncio.to_thread(cluster.restart, victim)
            await observer.connect([cluster.machine(victim.name)])
        seconds = [s for s, _ in failovers]
        if seconds:
            print(
                f"failover (agent_ttl={args.agent_ttl}): min {min(seconds):.2f}s  "
                f"median {statistics.median(seconds):.2f}s  max {max(seconds):.2f}s "
                f"over {len(seconds)} kills"
            )
    finally:
        observer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--units", type=int, default=50, help="units timed one by one")
    parser.add_argument("--load", type=int, default=100, help="units running for RSS/failover")
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--agent-ttl", default="5s")
    args = parser.parse_args()
    args.load = max(args.load, args.units)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        unit_dir = Path(tmp)
        (unit_dir / "probe@.service").write_text(TEMPLATE)
        cluster = Cluster.start(args.machines, LAYOUT, agent_ttl=args.agent_ttl)
        try:
            asyncio.run(measure(args, cluster, unit_dir))
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
