"""An agent whose machine is drained with ``--include-global`` stops its global
units, and runs them again once the machine is uncordoned; a drain without it
leaves them running (in-memory systemd, real etcd)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleet import maintenance
from fleet.cluster.etcd import EtcdProcess
from fleet.maintenance import DrainOptions
from tests.agent.support import running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd


@async_test
async def test_include_global_stops_global_units_until_uncordoned(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "everywhere.service"
    body, hash = unit(extra="[X-Fleet]\nGlobal=true\n")
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        async with running(w.agent()):
            await eventually(w.unit_is(name, "active"))
            mid = w.machine.id
            await maintenance.drain(w.registry, mid, 1.0, DrainOptions())
            await asyncio.sleep(0.5)  # sampled: a drain without --include-global keeps it
            assert await w.active(name) == "active"

            await maintenance.drain(w.registry, mid, 2.0, DrainOptions(include_global=True))
            await eventually(w.unit_is(name, "inactive"))
            assert await maintenance.uncordon(w.registry, mid)
            await eventually(w.unit_is(name, "active"))
