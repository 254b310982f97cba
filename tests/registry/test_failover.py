"""The registry on a real 3-member etcd (loopback): a member's death, a hang, a
leader move and a quorum loss leave watches, leases and calls working.

Each test runs its own members (fleet.cluster.etcd_members, the code
``fleet-cluster up --etcd-members 3`` runs) and one EtcdRegistry given every
endpoint, as fleetd is. The regression this guards: failing over used to close
the retired gRPC channel, grpc.aio cancelled the calls still open on it, and
the CancelledError ended the watch and keepalive loops, which only catch
StoreError; the agent then sat there doing nothing.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]
import pytest

from fleet.cluster.etcd_members import EtcdCluster, plan_members
from fleet.core.model import DesiredState, Machine
from fleet.errors import StoreError, StoreUnavailable
from fleet.ports import JobChanged, RegistryEvent, Scope, Topic
from fleet.registry.client import translate
from fleet.registry.etcd import EtcdRegistry
from tests.registry import async_test, eventually

JOBS = Scope(Topic.JOBS)
BODY = "[Service]\nExecStart=/bin/true\n"
HASH = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
TIMEOUT = 1.0  # etcd_request_timeout of these registries
TTL = 2.0


@pytest.fixture
def members() -> Iterator[EtcdCluster]:
    with tempfile.TemporaryDirectory(prefix="fleet-etcd3-", dir="/dev/shm") as d:
        cluster = EtcdCluster(plan_members(3, "127.0.0.1", Path(d), raft_ms=(50, 500)))
        with cluster:
            yield cluster


def member_in_use(members: EtcdCluster, reg: EtcdRegistry) -> str:
    return next(n for n in members.names if members.spec(n).endpoint == reg.endpoint)


async def connect_leader_first(members: EtcdCluster, prefix: str) -> EtcdRegistry:
    leader = members.leader()
    order = [leader, *(n for n in members.names if n != leader)]
    return await EtcdRegistry.connect(
        [members.spec(n).endpoint for n in order], prefix, request_timeout=TIMEOUT
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async def probe() -> bool:
        return condition()

    await eventually(probe, timeout=timeout)


async def collect(stream: AsyncIterator[list[RegistryEvent]], into: list[str]) -> None:
    async for batch in stream:
        into.extend(e.name for e in batch if isinstance(e, JobChanged) and e.job is not None)


async def create_retrying(reg: EtcdRegistry, name: str, within: float) -> float:
    """Create a unit, retrying outage answers; seconds it took."""
    started = time.monotonic()
    while True:
        try:
            await reg.create_unit(name, BODY, HASH, DesiredState.LOADED, is_global=False)
            return time.monotonic() - started
        except StoreUnavailable:
            if time.monotonic() - started > within:
                raise
            await asyncio.sleep(0.05)


@async_test
async def test_leader_member_killed_watch_lease_and_calls_carry_on(
    members: EtcdCluster, etcd_prefix: str
) -> None:
    async with await connect_leader_first(members, etcd_prefix) as reg:
        lease = await reg.register_machine(Machine("m" * 32), TTL)
        seen: list[str] = []
        _, revision = await reg.list_changes(JOBS)
        watcher = asyncio.create_task(collect(reg.watch(JOBS, revision + 1), seen))
        await reg.create_unit("before.service", BODY, HASH, DesiredState.LOADED, is_global=False)
        await until(lambda: seen == ["before.service"])
        killed = member_in_use(members, reg)
        assert killed == members.leader()
        members.kill(killed)
        took = await create_retrying(reg, "after.service", within=3 * TIMEOUT)
        print(f"first write after the leader member's death: {took:.2f}s")
        assert took < 3 * TIMEOUT
        assert reg.endpoint != members.spec(killed).endpoint
        await until(lambda: seen == ["before.service", "after.service"], timeout=3 * TIMEOUT)
        await asyncio.sleep(TTL * 1.5)  # a whole TTL of keepalives on the survivors
        assert not lease.lost
        assert not watcher.done()
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher  # a real cancellation still ends it


@async_test
async def test_member_in_use_paused_watch_moves_to_a_live_member(
    members: EtcdCluster, etcd_prefix: str
) -> None:
    async with await connect_leader_first(members, etcd_prefix) as reg:
        lease = await reg.register_machine(Machine("p" * 32), TTL)
        seen: list[str] = []
        _, revision = await reg.list_changes(JOBS)
        watcher = asyncio.create_task(collect(reg.watch(JOBS, revision + 1), seen))
        await reg.create_unit("before.service", BODY, HASH, DesiredState.LOADED, is_global=False)
        await until(lambda: seen == ["before.service"])
        paused = member_in_use(members, reg)
        members.pause(paused)
        try:
            took = await create_retrying(reg, "after.service", within=5 * TIMEOUT)
            print(f"first write after the member in use hung: {took:.2f}s")
            # The hung member holds the watch stream open: it must be moved, not waited on.
            await until(lambda: seen == ["before.service", "after.service"], timeout=5 * TIMEOUT)
            assert not watcher.done()
            await asyncio.sleep(TTL)
            assert not lease.lost
        finally:
            members.resume(paused)
        watcher.cancel()


@async_test
async def test_leader_moved_twice_nothing_lost(members: EtcdCluster, etcd_prefix: str) -> None:
    async with await connect_leader_first(members, etcd_prefix) as reg:
        lease = await reg.register_machine(Machine("l" * 32), TTL)
        seen: list[str] = []
        _, revision = await reg.list_changes(JOBS)
        watcher = asyncio.create_task(collect(reg.watch(JOBS, revision + 1), seen))
        written = []
        for i, target in enumerate(n for n in members.names if n != members.leader()):
            members.move_leader(target)
            name = f"u{i}.service"
            await create_retrying(reg, name, within=3 * TIMEOUT)
            written.append(name)
        await until(lambda: seen == written, timeout=3 * TIMEOUT)
        assert not lease.lost
        assert not watcher.done()
        watcher.cancel()


@async_test
async def test_quorum_lost_for_two_ttl_then_everything_resumes(
    members: EtcdCluster, etcd_prefix: str
) -> None:
    async with await connect_leader_first(members, etcd_prefix) as reg:
        seen: list[str] = []
        _, revision = await reg.list_changes(JOBS)
        watcher = asyncio.create_task(collect(reg.watch(JOBS, revision + 1), seen))
        await reg.create_unit("before.service", BODY, HASH, DesiredState.LOADED, is_global=False)
        await until(lambda: seen == ["before.service"])
        leader = members.leader()
        down = [leader, next(n for n in members.names if n != leader)]
        for name in down:
            members.kill(name)
        started = time.monotonic()
        # No quorum: every call fails within the deadline, none hangs, none cancels.
        while time.monotonic() - started < 2 * TTL:
            began = time.monotonic()
            with pytest.raises(StoreError):
                await reg.list_jobs()
            assert time.monotonic() - began < 2 * TIMEOUT + 0.5
            assert not watcher.done()
            await asyncio.sleep(0.2)
        for name in down:
            members.restart(name, wait=False)
        back = time.monotonic()
        took = await create_retrying(reg, "after.service", within=10.0)
        print(f"first write {took:.2f}s after quorum returned")
        await until(lambda: seen == ["before.service", "after.service"], timeout=10.0)
        print(f"watch delivered {time.monotonic() - back:.2f}s after quorum returned")
        lease = await reg.register_machine(Machine("q" * 32), TTL)
        await asyncio.sleep(TTL)
        assert not lease.lost
        assert not watcher.done()
        watcher.cancel()


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@async_test
async def test_cancelled_calls_are_outages_unless_the_task_is_being_cancelled() -> None:
    url = "http://127.0.0.1:1"
    error = translate(_rpc_error(grpc.StatusCode.CANCELLED, "Locally cancelled"), url)
    assert isinstance(error, StoreUnavailable)
    core = translate(_rpc_error(grpc.StatusCode.INTERNAL, "Internal error from Core"), url)
    assert isinstance(core, StoreUnavailable)
    refused = translate(_rpc_error(grpc.StatusCode.INTERNAL, "etcdserver: corrupt"), url)
    assert type(refused) is StoreError

    outcome: list[str] = []

    async def being_cancelled() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            try:
                translate(_rpc_error(grpc.StatusCode.CANCELLED, "Locally cancelled"), url)
            except asyncio.CancelledError:
                outcome.append("stays a cancellation")
            else:
                outcome.append("became a store error")
            raise

    task = asyncio.create_task(being_cancelled())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["stays a cancellation"]
