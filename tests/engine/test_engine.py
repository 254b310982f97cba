"""The engine against a real etcd, with SIMULATED machines (presence records on leases).

Covers leadership (failover, fencing of a deposed leader), adoption of an
existing schedule, rescheduling on simulated-machine loss and metadata change,
unplaceable reasons (B1), rewrites of changed hash/desired state, and the
Conflicts invariant across passes.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job
from fleet.errors import NotLeader
from fleet.metrics import FleetMetrics
from fleet.ports import ScheduleChange
from fleet.registry import codec
from fleet.registry.etcd import EtcdLeadership
from tests.asyncsupport import async_test
from tests.engine.harness import (
    LEASE_TTL,
    SimulatedCluster,
    simulated_cluster,
    unit_body,
    wait_until,
)

pytestmark = pytest.mark.etcd


def _revoke_with_etcdctl(etcd: EtcdProcess, lease_id: int) -> None:
    """Revoke a lease from outside the process, as an operator (or etcd) would."""
    subprocess.run(
        ["etcdctl", f"--endpoints={etcd.endpoint}", "lease", "revoke", f"{lease_id:x}"],
        check=True,
        capture_output=True,
        env={"ETCDCTL_API": "3"},
        timeout=10,
    )


def _etcdctl_put(etcd: EtcdProcess, key: str, value: bytes) -> None:
    subprocess.run(
        ["etcdctl", f"--endpoints={etcd.endpoint}", "put", key, value.decode()],
        check=True,
        capture_output=True,
        env={"ETCDCTL_API": "3"},
        timeout=10,
    )


def _all_placed(names: set[str]) -> Callable[[dict[str, list[str]]], bool]:
    def check(schedule: dict[str, list[str]]) -> bool:
        return set(schedule) >= names and all(len(schedule[n]) == 1 for n in names)

    return check


async def _leader_engine(cluster: SimulatedCluster, *ids: str) -> str:
    async def leaders() -> list[str]:
        return [i for i in ids if cluster.engine(i).is_leader]

    found = await wait_until(leaders, lambda ls: len(ls) == 1, what="one leader")
    return found[0]


# --- leadership ---------------------------------------------------------------------


@async_test
async def test_standby_engine_takes_over_within_the_lease_ttl_without_moving_units(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        for i in range(3):
            await cluster.add_simulated_machine(f"sim-machine-{i}")
        names = {f"web{i}.service" for i in range(6)}
        for name in sorted(names):
            await cluster.submit(name)
        await cluster.start_engine("engine-a")
        await cluster.start_engine("engine-b")
        leader = await _leader_engine(cluster, "engine-a", "engine-b")
        standby = "engine-b" if leader == "engine-a" else "engine-a"
        before = await wait_until(cluster.schedule, _all_placed(names), what="all placed")

        leadership = cluster.engine(leader).current_leadership
        assert isinstance(leadership, EtcdLeadership)
        loop = asyncio.get_running_loop()
        _revoke_with_etcdctl(etcd, leadership.lease_id)
        # From when etcd has revoked it: etcdctl's own start-up is not the takeover.
        revoked_at = loop.time()

        async def standby_leads() -> bool:
            return cluster.engine(standby).is_leader

        await wait_until(standby_leads, bool, timeout=5.0, what="standby leads")
        assert loop.time() - revoked_at < LEASE_TTL
        # Let the new leader run several passes over the adopted schedule.
        await wait_until(
            cluster.engine_passes(standby), lambda n: n >= 5, what="passes by the new leader"
        )
        assert await cluster.schedule() == before
        stats = cluster.engine(standby).statistics()
        assert (stats.placements, stats.removals, stats.rewrites) == (0, 0, 0)


@async_test
async def test_a_deposed_leaders_write_is_rejected(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        old_registry = await cluster.new_registry()
        old = await old_registry.campaign("engine-old", "1", ttl=LEASE_TTL)
        assert old is not None
        assert isinstance(old, EtcdLeadership)
        _revoke_with_etcdctl(etcd, old.lease_id)
        new_registry = await cluster.new_registry()
        new = await wait_until(
            lambda: new_registry.campaign("engine-new", "1", ttl=LEASE_TTL),
            lambda held: held is not None,
            what="new leadership",
        )
        assert new is not None
        _, hash = await _submit_hash(cluster, "stale.service")
        with pytest.raises(NotLeader):
            await old_registry.apply_schedule(
                old, [ScheduleChange("stale.service", "sim-machine-0", hash)], {}
            )
        assert await cluster.schedule() == {}
        await new_registry.apply_schedule(
            new, [ScheduleChange("stale.service", "sim-machine-0", hash)], {}
        )
        assert await cluster.schedule() == {"stale.service": ["sim-machine-0"]}


async def _submit_hash(cluster: SimulatedCluster, name: str) -> tuple[str, str]:
    return name, await cluster.submit(name)


# --- adoption -------------------------------------------------------------------------


@dataclass(frozen=True)
class AdoptCase:
    id: str
    # unit name -> machine it is already scheduled to (hand-written, maybe unbalanced)
    existing: dict[str, str]


ADOPT = [
    AdoptCase("balanced", {"a.service": "sim-m0", "b.service": "sim-m1", "c.service": "sim-m2"}),
    AdoptCase(
        "everything on one machine",
        {"a.service": "sim-m0", "b.service": "sim-m0", "c.service": "sim-m0"},
    ),
]


@pytest.mark.parametrize("case", ADOPT, ids=[c.id for c in ADOPT])
@async_test
async def test_a_new_leader_adopts_the_existing_schedule(
    etcd: EtcdProcess, etcd_prefix: str, case: AdoptCase
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        for i in range(3):
            await cluster.add_simulated_machine(f"sim-m{i}")
        changes = []
        for name, machine_id in case.existing.items():
            hash = await cluster.submit(name)
            changes.append(ScheduleChange(name, machine_id, hash, DesiredState.LAUNCHED))
        # Written by a previous leader's term, then that leader resigns.
        previous = await cluster.new_registry()
        held = await previous.campaign("engine-previous", "1", ttl=LEASE_TTL)
        assert held is not None
        await previous.apply_schedule(held, changes, {})
        await previous.resign(held)
        before = await cluster.schedule()

        engine = await cluster.start_engine("engine-new")
        await wait_until(cluster.engine_passes("engine-new"), lambda n: n >= 5, what="passes")
        assert await cluster.schedule() == before
        stats = engine.statistics()
        assert stats.leader
        assert (stats.placements, stats.removals, stats.rewrites) == (0, 0, 0)


# --- rescheduling ---------------------------------------------------------------------


@async_test
async def test_units_of_a_lost_simulated_machine_move_to_the_remaining_ones(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        for i in range(3):
            await cluster.add_simulated_machine(f"sim-m{i}")
        names = {f"svc{i}.service" for i in range(6)}
        for name in sorted(names):
            await cluster.submit(name)
        await cluster.start_engine("engine")
        before = await wait_until(cluster.schedule, _all_placed(names), what="all placed")
        doomed = {n for n, ms in before.items() if ms == ["sim-m1"]}
        assert doomed

        await cluster.kill_simulated_machine("sim-m1")  # its lease expires after the TTL

        def moved(schedule: dict[str, list[str]]) -> bool:
            return _all_placed(names)(schedule) and all(schedule[n] != ["sim-m1"] for n in doomed)

        after = await wait_until(cluster.schedule, moved, what="units moved off sim-m1")
        for name in names - doomed:
            assert after[name] == before[name], f"{name} moved although its machine lives"
        assert {m for n in doomed for m in after[n]} <= {"sim-m0", "sim-m2"}


@async_test
async def test_a_dynamic_metadata_change_reschedules(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("sim-m0", {"role": "web"})
        await cluster.add_simulated_machine("sim-m1", {"role": "db"})
        await cluster.submit("front.service", "MachineMetadata=role=web")
        await cluster.start_engine("engine")
        await wait_until(
            cluster.schedule, lambda s: s == {"front.service": ["sim-m0"]}, what="on sim-m0"
        )
        await cluster.registry.set_machine_metadata("sim-m0", "role", None)
        await cluster.registry.set_machine_metadata("sim-m1", "role", "web")
        await wait_until(
            cluster.schedule, lambda s: s == {"front.service": ["sim-m1"]}, what="on sim-m1"
        )


# --- reasons (B1) ---------------------------------------------------------------------


@async_test
async def test_an_unplaceable_unit_gets_a_reason_cleared_when_a_machine_fits(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("sim-hdd-0", {"disk": "hdd"})
        await cluster.add_simulated_machine("sim-hdd-1", {"disk": "hdd"})
        await cluster.submit("db.service", "MachineMetadata=disk=ssd")
        await cluster.start_engine("engine")
        reasons = await wait_until(
            cluster.registry.list_reasons, lambda r: "db.service" in r, what="a reason"
        )
        why = reasons["db.service"].text
        assert "MachineMetadata" in why
        assert "sim-hdd-0" in why or "sim-hdd" in why
        assert await cluster.schedule() == {}

        await cluster.add_simulated_machine("sim-ssd", {"disk": "ssd"})
        await wait_until(
            cluster.schedule, lambda s: s == {"db.service": ["sim-ssd"]}, what="placed on ssd"
        )
        await wait_until(cluster.registry.list_reasons, lambda r: r == {}, what="reason cleared")


@async_test
async def test_a_unit_whose_x_fleet_cannot_be_parsed_gets_a_reason_and_others_still_place(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("sim-m0")
        # The registry refuses Global with MachineOf at submit time: write around it,
        # as a buggy or older client could.
        body, hash = unit_body("Global=true\nMachineOf=other.service")
        job = Job("bad.service", hash, DesiredState.LAUNCHED)
        _etcdctl_put(etcd, f"{etcd_prefix}unit/{hash}", codec.encode_body(body))
        _etcdctl_put(etcd, f"{etcd_prefix}job/bad.service", codec.encode_job(job))
        await cluster.submit("good.service")
        await cluster.start_engine("engine")
        await wait_until(
            cluster.schedule, lambda s: s == {"good.service": ["sim-m0"]}, what="good placed"
        )
        reasons = await wait_until(
            cluster.registry.list_reasons, lambda r: "bad.service" in r, what="a reason"
        )
        assert "X-Fleet" in reasons["bad.service"].text


# --- rewrites -------------------------------------------------------------------------


@async_test
async def test_desired_state_and_hash_changes_rewrite_the_schedule_entry(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("sim-m0")
        await cluster.add_simulated_machine("sim-m1")
        await cluster.submit("app.service")
        await cluster.start_engine("engine")
        placed = await wait_until(cluster.schedule, lambda s: "app.service" in s, what="placed")
        machine_id = placed["app.service"][0]

        async def entry() -> tuple[str, DesiredState] | None:
            entries = await cluster.registry.list_schedule_entries()
            job = entries.get(machine_id, {}).get("app.service")
            return None if job is None else (job.hash, job.desired_state)

        await cluster.registry.set_desired_state("app.service", DesiredState.LOADED)
        first = await wait_until(
            entry, lambda e: e is not None and e[1] is DesiredState.LOADED, what="loaded"
        )
        body, new_hash = _other_body()
        await cluster.registry.replace_unit(
            "app.service", body, new_hash, DesiredState.LAUNCHED, is_global=False
        )
        await wait_until(
            entry, lambda e: e == (new_hash, DesiredState.LAUNCHED), what="new hash launched"
        )
        assert first is not None
        assert first[0] != new_hash
        await cluster.registry.set_desired_state("app.service", DesiredState.INACTIVE)
        await wait_until(cluster.schedule, lambda s: s == {}, what="inactive unscheduled")
        await cluster.registry.set_desired_state("app.service", DesiredState.LAUNCHED)
        await wait_until(cluster.schedule, lambda s: "app.service" in s, what="placed again")
        assert await cluster.registry.destroy_unit("app.service")
        await wait_until(cluster.schedule, lambda s: s == {}, what="destroyed unscheduled")


def _other_body() -> tuple[str, str]:
    return unit_body(description="changed")


# --- invariants -------------------------------------------------------------------------


@async_test
async def test_conflicting_units_never_share_a_simulated_machine_across_passes(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        for i in range(3):
            await cluster.add_simulated_machine(f"sim-m{i}")
        await cluster.start_engine("engine")
        names = [f"solo@{i}.service" for i in range(5)]
        seen: list[dict[str, list[str]]] = []

        async def observe() -> dict[str, list[str]]:
            schedule = await cluster.schedule()
            seen.append(schedule)
            return schedule

        for name in names:  # one by one: every submission is its own pass
            await cluster.submit(name, "Conflicts=solo@*.service")
            await observe()
        placed = await wait_until(observe, lambda s: len(s) == 3, what="three placed")
        reasons = await wait_until(
            cluster.registry.list_reasons, lambda r: len(r) == 2, what="two unplaceable"
        )
        assert all("Conflicts" in why.text for why in reasons.values())
        await cluster.add_simulated_machine("sim-m3")
        await wait_until(observe, lambda s: len(s) == 4, what="four placed")
        await wait_until(observe, lambda s: len(s) == 4, timeout=0.5)  # a few more samples
        for schedule in seen:
            machines = [m for ms in schedule.values() for m in ms]
            assert len(machines) == len(set(machines)), f"conflict shared a machine: {schedule}"
        assert len(placed) == 3


# --- store outage (B7) ------------------------------------------------------------------


@async_test
async def test_an_etcd_outage_moves_nothing(tmp_path: Path) -> None:
    """etcd down for longer than the engine's lease TTL: simulated machines whose
    presence leases survive (etcd renews leases when it elects a leader again)
    keep their units; the engine re-leads, relists and writes nothing."""
    etcd = EtcdProcess(data_dir=tmp_path / "etcd")
    etcd.start()
    try:
        async with simulated_cluster(etcd, "/fleet-outage/") as cluster:
            for i in range(3):
                await cluster.add_simulated_machine(f"sim-m{i}", ttl=30.0)
            names = {f"keep{i}.service" for i in range(6)}
            for name in sorted(names):
                await cluster.submit(name)
            engine = await cluster.start_engine("engine")
            before = await wait_until(cluster.schedule, _all_placed(names), what="all placed")
            first = engine.statistics()
            elected = first.elections_won

            etcd.stop()
            await asyncio.sleep(2 * LEASE_TTL)  # the outage itself: nothing to observe
            assert not engine.is_leader
            etcd.start()

            async def re_elected() -> int:
                return engine.statistics().elections_won

            await wait_until(re_elected, lambda n: n > elected, what="leads again")
            await wait_until(
                cluster.engine_passes("engine"), lambda n: n >= first.passes + 3, what="passes"
            )
            assert await cluster.schedule() == before
            stats = engine.statistics()
            assert (stats.placements, stats.removals, stats.rewrites) == (
                first.placements,
                first.removals,
                first.rewrites,
            )
    finally:
        etcd.stop()


@async_test
async def test_the_engine_records_fleets_metrics(etcd: EtcdProcess, etcd_prefix: str) -> None:
    metrics = FleetMetrics()
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("sim-m0")
        for i in range(3):
            await cluster.submit(f"hello{i}.service")
        await cluster.start_engine("engine-0", metrics=metrics)
        await wait_until(cluster.schedule, lambda s: len(s) == 3, what="3 units placed")
    text = metrics.render().decode()
    assert 'fleet_engine_task_count_total{type="place"} 3.0' in text
    assert "fleet_engine_reconcile_count_total " in text
    assert "fleet_engine_reconcile_count_total 0.0" not in text
    assert "fleet_engine_leader_start_time 0.0" not in text


@async_test
async def test_without_watches_the_engine_still_places_by_relisting(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    """fleet's disable_watches: no watch streams; each interval relists and plans."""
    async with simulated_cluster(etcd, etcd_prefix) as cluster:
        await cluster.add_simulated_machine("sim-m0")
        await cluster.submit("early.service")
        engine = await cluster.start_engine("engine-0", watches=False)
        await wait_until(cluster.schedule, lambda s: "early.service" in s, what="early placed")
        await cluster.submit("late.service")
        await wait_until(cluster.schedule, lambda s: "late.service" in s, what="late placed")
        assert engine.statistics().relists >= 1
