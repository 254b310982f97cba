"""StopAfterDisconnect on the in-memory systemd and a real (paused) etcd: the agent
stops a unit with the option once no presence refresh has been acknowledged for that
long, keeps every other unit running (B7), and starts the unit again once the
presence is confirmed while the schedule still wants it there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from tests.agent.support import FAST_FAILING, TTL, running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd

LAUNCHED = DesiredState.LAUNCHED
LIMIT = 0.6  # StopAfterDisconnect, well below TTL (2 s)


@async_test
async def test_a_unit_with_stop_after_disconnect_is_stopped_and_restarted_on_heal(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    single, plain = "dc-single.service", "dc-plain.service"
    single_body, single_hash = unit(extra=f"\n[X-Fleet]\nStopAfterDisconnect={LIMIT}s\n")
    plain_body, plain_hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        for name, body, hash in (
            (single, single_body, single_hash),
            (plain, plain_body, plain_hash),
        ):
            await w.create(name, body, hash)
            await w.schedule(name, hash, LAUNCHED)
        store = await w.own_registry(request_timeout=FAST_FAILING)
        agent = w.agent(store=store, resync_interval=0.2)
        async with running(agent):
            await eventually(w.unit_is(single, "active"))
            await eventually(w.unit_is(plain, "active"))
            assert agent.guard.disconnected_for() < 0.5
            lease = agent.lease
            assert lease is not None
            etcd.pause()
            paused = time.monotonic()
            try:
                await eventually(w.unit_is(single, "inactive"), timeout=TTL)
                took = time.monotonic() - paused
                assert agent.guard.stopped == [single]
                assert await w.active(plain) == "active"  # no policy: keeps running (B7)
                # The clock starts at the last acknowledged refresh, at most ttl/10 earlier.
                assert LIMIT - TTL / 10 <= took < LIMIT + 0.4
                assert agent.current[single].state is DesiredState.LOADED
            finally:
                etcd.resume()
            assert time.monotonic() - paused < TTL  # healed before the presence expired
            # Confirmed again, still scheduled here: started again; the other never restarted.
            await eventually(w.unit_is(single, "active"), timeout=TTL)
            assert agent.lease is lease  # the same presence all along
            assert w.systemd.started(single) == 2
            assert w.systemd.started(plain) == 1
