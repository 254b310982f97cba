"""Health at a glance (issue 11): list-units/list-unit-files filters, list-machines'
status/leader/version/units fields and cluster-status, through both drivers (the API
on a real socket, etcd directly) against one real etcd. The machines, the engine
leader and the unit states are simulated (written as agent and engine would)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from fleet import units
from fleet.cluster.etcd import EtcdProcess
from fleet.core.maintenance import Cordon
from fleet.core.model import DesiredState, Machine, PlacementReason, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import ScheduleChange
from fleet.registry.etcd import EtcdRegistry
from tests.api.support import served_api
from tests.asyncsupport import async_test, eventually
from tests.fleetctl.support import Result, driver_flags, run_async

pytestmark = pytest.mark.etcd

M1 = "aaaa1111" + "1" * 24
M2 = "bbbb2222" + "2" * 24
GONE = "dddd4444" + "4" * 24
UNIT = UnitFile.parse("[Service]\nExecStart=/bin/sleep 1000\n")
# name, machine, fleet state, systemd active, sub
LOST_AT = 1_700_000_000.5
LAYOUT = (
    ("web@1.service", M1, DesiredState.LAUNCHED, "active", "running"),
    ("web@2.service", M2, DesiredState.LAUNCHED, "failed", "failed"),
    ("db.service", M1, DesiredState.LOADED, "inactive", "dead"),
)


@asynccontextmanager
async def cluster(etcd: EtcdProcess, prefix: str) -> AsyncIterator[dict[str, tuple[str, ...]]]:
    async with served_api(etcd, prefix) as api:
        registry = api.registry
        leases = {
            m: await registry.register_machine(Machine(m, ip, version="0.0.9"), ttl=60)
            for m, ip in ((M1, "10.0.0.1"), (M2, "10.0.0.2"))
        }
        leadership = await registry.campaign(M2, "0.0.9", ttl=60)
        assert leadership is not None
        await units.create_unit(registry, "idle.service", UNIT, DesiredState.INACTIVE)
        for name, machine, state, active, sub in LAYOUT:
            await units.create_unit(registry, name, UNIT, state)
            change = ScheduleChange(name, machine, UNIT.hash, state)
            await registry.apply_schedule(leadership, [change], {})
            await registry.publish_unit_state(
                leases[machine],
                UnitState(name, machine, "loaded", active, sub, UNIT.hash, state),
            )
        await registry.set_cordon(M1, Cordon("kernel", 1.0))
        await units.create_unit(registry, "nowhere.service", UNIT, DesiredState.LAUNCHED)
        why = PlacementReason("no machine matches")
        await registry.apply_schedule(leadership, [], {"nowhere.service": why})
        # A machine that joined, then died: its lease expires, its record stays.
        async with await EtcdRegistry.connect([etcd.endpoint], prefix) as other:
            await other.register_machine(Machine(GONE, "10.0.0.4", version="0.0.8"), ttl=1)
        await eventually(lambda: _gone(registry), timeout=10.0, what="the lease to expire")
        # As the engine does when it notices.
        await registry.sweep_lost_machines({M1, M2}, LOST_AT, retention=3600)
        yield driver_flags(api.socket_path, etcd.endpoint, prefix)


async def _gone(registry: EtcdRegistry) -> bool:
    return GONE not in {m.id for m in await registry.list_machines()}


async def each(flags: dict[str, tuple[str, ...]], *args: str) -> Result:
    """The same command through both drivers: the same answer; that answer."""
    results = {driver: await run_async(*f, *args) for driver, f in flags.items()}
    assert results["api"] == results["etcd"], results
    return results["api"]


def units_listed(result: Result) -> list[str]:
    assert result.code == 0, result.err
    return [line.split()[0] for line in result.out.splitlines()]


@async_test
async def test_list_units_filters_by_name_pattern_and_state(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with cluster(etcd, etcd_prefix) as flags:
        plain = ("list-units", "--no-legend")
        assert units_listed(await each(flags, *plain)) == [
            "db.service",
            "web@1.service",
            "web@2.service",
        ]
        assert units_listed(await each(flags, *plain, "db")) == ["db.service"]
        assert units_listed(await each(flags, *plain, "web@*")) == [
            "web@1.service",
            "web@2.service",
        ]
        assert units_listed(await each(flags, *plain, "--state", "failed")) == ["web@2.service"]
        assert units_listed(await each(flags, *plain, "--state=running,dead")) == [
            "db.service",
            "web@1.service",
        ]
        assert units_listed(await each(flags, *plain, "--state", "failed", "web@1")) == []
        listed = json.loads((await each(flags, "list-units", "-o", "json", "web@2")).out)
        assert [(i["unit"], i["active_state"]) for i in listed] == [("web@2.service", "failed")]


@async_test
async def test_list_unit_files_filters_by_name_and_fleet_state(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with cluster(etcd, etcd_prefix) as flags:
        plain = ("list-unit-files", "--no-legend")
        # Desired or current: nowhere.service wants launched but is inactive.
        assert units_listed(await each(flags, *plain, "--state", "inactive")) == [
            "idle.service",
            "nowhere.service",
        ]
        assert units_listed(await each(flags, *plain, "--state", "launched", "no*")) == [
            "nowhere.service"
        ]
        assert units_listed(await each(flags, *plain, "--state", "launched", "web@1")) == [
            "web@1.service"
        ]
        assert units_listed(await each(flags, *plain, "nothing")) == []


@async_test
async def test_list_machines_status_leader_version_and_units(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with cluster(etcd, etcd_prefix) as flags:
        # fleet's default columns: live machines only.
        plain = await each(flags, "list-machines", "--no-legend")
        assert [line.split()[0] for line in plain.out.splitlines()] == [
            "aaaa1111...",
            "bbbb2222...",
        ]
        table = await each(
            flags, "list-machines", "--no-legend", "--fields=machine,status,leader,version,units"
        )
        assert table.code == 0, table.err
        assert [line.split("\t") for line in table.out.replace("\t\t", "\t").splitlines()] == [
            ["aaaa1111...", "cordoned", "-", "0.0.9", "2"],
            ["bbbb2222...", "ok", "*", "0.0.9", "1"],
            ["dddd4444...", "lost", "-", "0.0.8", "0"],
        ]
        # Without the status field a lost machine is not listed (no row would say so).
        leader_only = await each(flags, "list-machines", "--no-legend", "--fields=machine,leader")
        assert len(leader_only.out.splitlines()) == 2
        listed = json.loads((await each(flags, "list-machines", "-o", "json")).out)
        assert [(m["machine_id"], m["status"], m["leader"], m["units"]) for m in listed] == [
            (M1, "cordoned", False, 2),
            (M2, "ok", True, 1),
            (GONE, "lost", False, 0),
        ]
        assert listed[2]["lost_since"] == LOST_AT
        assert listed[2]["ip"] == "10.0.0.4"
        assert listed[0]["lost_since"] is None
        assert listed[1]["version"] == "0.0.9"


@async_test
async def test_cluster_status_on_one_screen(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with cluster(etcd, etcd_prefix) as flags:
        text = await each(flags, "cluster-status")
        assert text.code == 0, text.err
        lines = text.out.splitlines()
        assert lines[0].split(None, 2)[2] == f"{M2} (10.0.0.2), version 0.0.9"
        assert lines[1].startswith("etcd:")
        assert lines[1].endswith("1 members, 1 healthy")
        assert lines[2].endswith("3: 1 ok, 1 cordoned, 1 lost")
        assert lines[3].endswith("5: 3 launched, 1 loaded, 1 inactive")
        assert lines[4].endswith("1 active, 1 failed, 1 inactive")
        assert lines[5].endswith("1")
        assert any(
            line.startswith("nowhere.service") and "no machine matches" in line for line in lines
        )
        # etcd's db size is live (it may grow between two runs): compare the rest.
        bodies = [
            json.loads((await run_async(*f, "cluster-status", "-o", "json")).out)
            for f in flags.values()
        ]
        for one in bodies:
            for member in one["etcd_members"]:
                assert member.pop("db_size") > 0
        assert bodies[0] == bodies[1]
        body = bodies[0]
        assert body["leader"] == {"machine_id": M2, "ip": "10.0.0.2", "version": "0.0.9"}
        (member,) = body["etcd_members"]
        assert member["healthy"] is True
        assert member["leader"] is True
        assert member["client_urls"] == [etcd.endpoint]
        assert member["version"]
        assert body["machines"] == {"total": 3, "ok": 1, "cordoned": 1, "lost": 1}
        assert body["units"] == {
            "total": 5,
            "desired": {"launched": 3, "loaded": 1, "inactive": 1},
            "active": {"active": 1, "failed": 1, "inactive": 1},
        }
        assert body["unplaceable"] == [{"unit": "nowhere.service", "reason": "no machine matches"}]
