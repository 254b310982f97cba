"""Conflicts on one machine, judged by the agent (issue 13): a global unit never starts
beside a scheduled unit it conflicts with (it waits until that unit is unscheduled
and stopped), and of two conflicting units scheduled here at once only the first
starts. Real etcd, in-memory systemd."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from tests.agent.support import holds, running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd

LAUNCHED = DesiredState.LAUNCHED
SLOW = 30.0


@async_test
async def test_a_global_unit_waits_until_the_conflicting_scheduled_unit_is_gone(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    job, glob = "cf-job.service", "cf-global.service"
    job_body, job_hash = unit()
    glob_body, glob_hash = unit(extra="\n[X-Fleet]\nGlobal=true\nConflicts=cf-job*\n")
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(job, job_body, job_hash)
        await w.schedule(job, job_hash, LAUNCHED)
        agent = w.agent(resync_interval=0.1)
        async with running(agent):
            await eventually(w.unit_is(job, "active"))
            tried = agent.reconciler.attempts
            await w.create(glob, glob_body, glob_hash)
            await eventually(holds(lambda: agent.reconciler.attempts >= tried + 3))
            assert glob not in agent.current  # scheduled job wins: the global waits
            assert w.systemd.started(glob) == 0
            # The engine moves the job away: stopped first, then the global starts.
            await w.schedule(job, None)
            await eventually(w.unit_is(glob, "active"))
            calls = w.mutations()
            assert calls.index(("stop_unit", job)) < calls.index(("start_unit", glob))
            assert await w.active(job) == "inactive"


@async_test
async def test_of_two_conflicting_units_scheduled_here_only_the_first_starts(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    a, b = "cf-a.service", "cf-b.service"
    a_body, a_hash = unit(extra="\n[X-Fleet]\nConflicts=cf-b.service\n")
    b_body, b_hash = unit(command="/usr/bin/sleep 4000")
    async with world(etcd, etcd_prefix, tmp_path) as w:
        for name, body, hash in ((a, a_body, a_hash), (b, b_body, b_hash)):
            await w.create(name, body, hash)
            await w.schedule(name, hash, LAUNCHED)
        agent = w.agent(resync_interval=SLOW)
        async with running(agent):
            await eventually(w.unit_is(a, "active"))
            tried = agent.reconciler.attempts
            await eventually(holds(lambda: agent.reconciler.attempts >= tried + 3))  # retried
            assert agent.current[b].state is DesiredState.LOADED
            assert w.systemd.started(b) == 0
            # a goes (a stale engine's mistake undone): b starts after a stopped.
            await w.schedule(a, None)
            await eventually(w.unit_is(b, "active"), timeout=5)
            calls = w.mutations()
            assert calls.index(("stop_unit", a)) < calls.index(("start_unit", b))
