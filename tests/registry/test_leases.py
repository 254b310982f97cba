"""The keepalive loop's timing rules (issue 13): refreshes every ttl/10, each with a
short deadline, a failed one retried at once on a fresh connection, and the bound on
the blackout a lease survives. The refresh function is scripted (pure loop logic);
tests/faults/test_agent_faults.py checks the bound on real machines."""

from __future__ import annotations

import asyncio
import itertools
import time

from fleet.errors import StoreUnavailable
from fleet.registry.leases import EtcdMachineLease, keep_alive, survivable_blackout
from tests.registry import async_test


@async_test
async def test_a_failed_refresh_is_retried_at_once_on_a_fresh_connection() -> None:
    lease = EtcdMachineLease("m", 1, ttl=2.0)
    calls: list[tuple[float, float, bool]] = []
    five = asyncio.Event()
    start = time.monotonic()

    async def refresh(lease_id: int, deadline: float, fresh: bool) -> int:
        assert lease_id == 1
        calls.append((time.monotonic() - start, deadline, fresh))
        if len(calls) == 5:
            five.set()
        if len(calls) in (2, 3):
            raise StoreUnavailable("blackout")
        return 2

    task = asyncio.create_task(keep_alive(lease, refresh))
    await asyncio.wait_for(five.wait(), 5)
    task.cancel()
    assert not lease.lost
    assert [fresh for _, _, fresh in calls] == [False, False, True, True, False]
    assert {deadline for _, deadline, _ in calls} == {0.2}  # max(0.2, 2/20)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls)]
    assert 0.18 <= gaps[0] < 0.4  # the interval: ttl/10
    assert gaps[1] < 0.15  # retries at once
    assert gaps[2] < 0.15
    assert gaps[3] >= 0.18  # back to the interval after a success


@async_test
async def test_a_lease_not_refreshed_for_a_whole_ttl_is_lost() -> None:
    lease = EtcdMachineLease("m", 1, ttl=0.6)

    async def refresh(lease_id: int, deadline: float, fresh: bool) -> int:
        raise StoreUnavailable("blackout")

    before = time.monotonic()
    task = asyncio.create_task(keep_alive(lease, refresh))
    reason = await asyncio.wait_for(lease.wait_lost(), 3)
    await task
    assert "not refreshed for 0.6s" in reason
    assert 0.55 <= time.monotonic() - before < 1.2


def test_the_survivable_blackout_bound() -> None:
    assert survivable_blackout(5.0) == 5.0 - 0.5 - 0.25 - 0.05  # 4.2 s of agent_ttl 5 s
    assert survivable_blackout(30.0) == 30.0 - 3.0 - 1.5 - 0.05
