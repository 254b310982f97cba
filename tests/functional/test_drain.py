"""Cordon and drain on real systemd machines.

A drain of a 4-machine cluster holding 12 units (plain ones, a MachineOf pair,
a Conflicts set, one pinned by MachineID, one global), sampled every 100 ms from
the agents' published states: never more than ``--max-parallel`` movable units
without an active copy, none active twice, none lost; the pinned unit is
reported and still runs; the global unit is untouched; the drained machine then
runs only the global and the pinned unit and takes nothing new until
``uncordon``. And a drain goes on when the fleetd that runs the engine is killed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.core.model import UnitState
from fleet.registry.etcd import EtcdRegistry
from tests.functional.cluster import Cluster
from tests.functional.unitviews import active_units

pytestmark = pytest.mark.functional

SLEEP = "[Service]\nExecStart=/bin/sleep 3000\n"


class StateSampler:
    """Every 100 ms, in a thread, the published states of the cluster's units."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.samples: list[list[UnitState]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        registry = await EtcdRegistry.connect(
            [self.cluster.endpoint], self.cluster.config.key_prefix, request_timeout=2.0
        )
        try:
            while not self._stop.is_set():
                self.samples.append(await registry.list_unit_states())
                await asyncio.sleep(0.1)
        finally:
            await registry.close()

    def __enter__(self) -> StateSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def write_units(tmp_path: Path, units: dict[str, str]) -> list[str]:
    for name, x_fleet in units.items():
        text = SLEEP + (f"\n[X-Fleet]\n{x_fleet}\n" if x_fleet else "")
        (tmp_path / name).write_text(text)
    return [str(tmp_path / name) for name in units]


def leader_of(cluster: Cluster) -> str:
    async def read() -> str:
        async with await EtcdRegistry.connect(
            [cluster.endpoint], cluster.config.key_prefix
        ) as registry:
            leader = await registry.get_leader()
            assert leader is not None, "no engine leader"
            return leader[0]

    return asyncio.run(read())


@pytest.fixture
def four(cluster_factory: Callable[..., Cluster]) -> Cluster:
    return cluster_factory(4)


def test_a_drain_moves_units_a_few_at_a_time_and_leaves_pinned_and_global_ones(
    four: Cluster, tmp_path: Path
) -> None:
    cluster = four
    drained = cluster.machines[0].machine_id
    others = [m.machine_id for m in cluster.machines[1:]]
    # Fill the machine to drain: the others take nothing while cordoned.
    cluster.fleetctl("cordon", *others, "--reason", "setup")
    first = write_units(
        tmp_path,
        {
            **{f"plain{i}.service": "" for i in range(1, 5)},
            "app.service": "",
            "app-side.service": "MachineOf=app.service",
            "conflict1.service": "Conflicts=conflict*",
            "pinned.service": f"MachineID={drained}",
        },
    )
    cluster.fleetctl("start", *first)
    cluster.fleetctl("uncordon", *others)
    rest = write_units(
        tmp_path,
        {
            "plain5.service": "",
            "plain6.service": "",
            "conflict2.service": "Conflicts=conflict*",
            "global.service": "Global=true",
        },
    )
    cluster.fleetctl("start", *rest)
    placed = active_units(cluster)
    assert all(placed[n.rsplit("/", 1)[1]] == [drained] for n in first), placed
    assert len(placed["global.service"]) == 4
    movable = {n.rsplit("/", 1)[1] for n in first} - {"pinned.service"}
    every = set(placed) - {"global.service"}

    with StateSampler(cluster) as sampler:
        done = cluster.fleetctl(
            "drain", drained[:12], "--max-parallel", "2", "--min-healthy-time", "1s",
            check=False, timeout=180,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr  # the pinned unit cannot move
    assert "Unit pinned.service pinned: MachineID=" in done.stdout
    assert done.stdout.splitlines()[-1].startswith(f"Drain of {drained}: incomplete")
    assert len(sampler.samples) > 20
    for states in sampler.samples:
        active = [s for s in states if s.active_state == "active"]
        names = [s.name for s in active if s.name != "global.service"]
        assert len(names) == len(set(names)), f"a unit ran twice: {sorted(names)}"
        assert len(movable - set(names)) <= 2, f"too many down: {movable - set(names)}"
        assert every - movable <= set(names), "an unmoved unit stopped"
        assert sum(1 for s in active if s.name == "global.service") == 4, "global touched"

    after = active_units(cluster)
    assert set(after) == every | {"global.service"}, "a unit was lost"
    on_drained = sorted(n for n, where in after.items() if drained in where)
    assert on_drained == ["global.service", "pinned.service"]
    assert after["app.service"] == after["app-side.service"]
    assert after["conflict1.service"] != after["conflict2.service"]
    status = cluster.fleetctl("drain", "--status", drained[:12])
    assert "pinned.service" in status.stdout
    machines = cluster.fleetctl("list-machines", "--full", "--fields", "machine,cordon")
    rows = {line.split()[0]: line.split()[-1] for line in machines.stdout.splitlines()[1:]}
    assert rows[drained] == "drain"  # the cordon's reason; the others are not cordoned
    assert {rows[m] for m in others} == {"-"}

    # The cordon lives in etcd, not in fleetd: it survives a reboot of the machine.
    node = next(m for m in cluster.machines if m.machine_id == drained)
    cluster.restart(node)

    def cordon_of_drained() -> str | None:
        out = cluster.fleetctl("list-machines", "--full", "--fields", "machine,cordon").stdout
        rows = dict(line.split() for line in out.splitlines()[1:])
        return rows.get(drained)

    assert cluster.wait_for(cordon_of_drained, 30, what="the rebooted machine listed") == "drain"
    # Nothing new lands on a cordoned machine, even a unit that can go nowhere else.
    (pin2,) = write_units(tmp_path, {"pinned2.service": f"MachineID={drained}"})
    late = cluster.fleetctl("start", "--block-attempts", "5", pin2, check=False)
    assert late.returncode == 2, late.stdout + late.stderr
    assert "cordon" in late.stderr
    cluster.fleetctl("uncordon", drained[:12])
    cluster.wait_for(
        lambda: active_units(cluster).get("pinned2.service") == [drained],
        30,
        what="pinned2 on the uncordoned machine",
    )


def test_a_drain_finishes_when_the_engine_leaders_fleetd_is_killed(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(3)
    leader = leader_of(cluster)
    drained = next(m.machine_id for m in cluster.machines if m.machine_id != leader)
    others = [m.machine_id for m in cluster.machines if m.machine_id != drained]
    cluster.fleetctl("cordon", *others)
    names = [f"move{i}.service" for i in range(6)]
    cluster.fleetctl("start", *write_units(tmp_path, dict.fromkeys(names, "")))
    cluster.fleetctl("uncordon", *others)

    cluster.fleetctl("drain", drained[:12], "--min-healthy-time", "1s", "--no-block")
    cluster.wait_for(
        lambda: "moved" in cluster.fleetctl("drain", "--status", drained[:12]).stdout,
        60,
        what="a first unit moved",
    )
    node = next(m for m in cluster.machines if m.machine_id == leader)
    before = cluster.systemctl(node, "show", "-p", "MainPID", "--value", "fleet.service").stdout
    cluster.systemctl(node, "kill", "--signal=KILL", "fleet.service", check=True)

    def drain_done() -> str | None:
        out = cluster.fleetctl("drain", "--status", drained[:12]).stdout
        return out if "Drain: done" in out else None

    report = cluster.wait_for(drain_done, 120, what="the drain done under the new leader")
    assert report.count("\tmoved\t") == len(names), report
    after_kill = cluster.systemctl(node, "show", "-p", "MainPID", "--value", "fleet.service")
    assert after_kill.stdout != before, "fleetd was not killed"
    after = active_units(cluster)
    assert set(after) == set(names)
    assert all(where != [drained] and len(where) == 1 for where in after.values()), after
