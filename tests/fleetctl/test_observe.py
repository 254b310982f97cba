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
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import ScheduleChange
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import Result, driver_flags, run_async

pytestmark = pytest.mark.etcd

M1 = "aaaa1111" + "1" * 24
M2 = "bbbb2222" + "2" * 24
UNIT = UnitFile.parse("[Service]\nExecStart=/bin/sleep 1000\n")
# name, machine, fleet state, systemd active, sub
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
        yield driver_flags(api.socket_path, etcd.endpoint, prefix)


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
        assert units_listed(await each(flags, *plain, "--state", "inactive")) == ["idle.service"]
        assert units_listed(await each(flags, *plain, "--state", "launched", "web@1")) == [
            "web@1.service"
        ]
        assert units_listed(await each(flags, *plain, "nothing")) == []
