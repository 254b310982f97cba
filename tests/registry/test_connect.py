"""Connecting: endpoint parsing, failover on connect, bounded failure time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
import pytest

from fleet.cluster.etcd import EtcdProcess, free_port
from fleet.errors import InvalidConfig, StoreError, StoreUnavailable
from fleet.metrics import FleetMetrics
from fleet.registry.client import Endpoint, parse_endpoints, translate
from fleet.registry.etcd import EtcdRegistry
from tests.registry import async_test, eventually

TIMEOUT = 0.5


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            ["http://127.0.0.1:2379"],
            [Endpoint("http://127.0.0.1:2379", "127.0.0.1:2379", tls=False)],
            id="one",
        ),
        pytest.param(
            ["http://a:1,https://b:2"],
            [Endpoint("http://a:1", "a:1", tls=False), Endpoint("https://b:2", "b:2", tls=True)],
            id="fleet-comma-list",
        ),
        pytest.param(
            ["https://etcd"], [Endpoint("https://etcd", "etcd:2379", tls=True)], id="default-port"
        ),
        pytest.param(
            ["http://[::1]:4001"],
            [Endpoint("http://[::1]:4001", "[::1]:4001", tls=False)],
            id="ipv6",
        ),
    ],
)
def test_parse_endpoints(given: list[str], expected: list[Endpoint]) -> None:
    assert parse_endpoints(given) == expected


@pytest.mark.parametrize(
    "given", [[], ["ftp://x:1"], ["http://x:notaport"]], ids=["none", "scheme", "port"]
)
def test_parse_endpoints_rejects(given: list[str]) -> None:
    with pytest.raises(InvalidConfig):
        parse_endpoints(given)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts TCP connections but never speaks: only a deadline ends a call."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["closed-port", "silent-port"])
@async_test
async def test_unreachable_etcd_fails_within_the_request_timeout(
    kind: str, silent_endpoint: str
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}" if kind == "closed-port" else silent_endpoint
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreUnavailable, match=f"cannot reach etcd at {endpoint}"):
        await EtcdRegistry.connect([endpoint], request_timeout=TIMEOUT)
    assert loop.time() - started < TIMEOUT + 0.5


@async_test
async def test_connect_tries_endpoints_in_order(etcd: EtcdProcess, etcd_prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with await EtcdRegistry.connect(
        [f"{dead},{etcd.endpoint}"], etcd_prefix, request_timeout=TIMEOUT
    ) as reg:
        assert reg.endpoint == etcd.endpoint
        assert await reg.list_jobs() == []


def _stopped(stat: Path) -> bool:
    return stat.read_text().rsplit(")", 1)[1].split()[0] == "T"


@async_test
async def test_calls_fail_fast_once_etcd_is_gone() -> None:
    server = EtcdProcess().start()
    try:
        reg = await EtcdRegistry.connect([server.endpoint], "/gone/", request_timeout=TIMEOUT)
        server.pause()  # SIGSTOP: sockets stay open, nothing answers
        assert server.proc is not None
        stat = Path(f"/proc/{server.proc.pid}/stat")
        # SIGSTOP lands asynchronously
        await eventually(lambda: asyncio.to_thread(_stopped, stat))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StoreUnavailable):
            await reg.list_jobs()
        assert loop.time() - started < TIMEOUT + 0.5
        server.resume()
        assert await reg.list_jobs() == []
        await reg.close()
    finally:
        server.stop()


@async_test
async def test_outage_fails_over_to_the_next_endpoint(etcd: EtcdProcess, etcd_prefix: str) -> None:
    first = EtcdProcess().start()
    try:
        reg = await EtcdRegistry.connect(
            [first.endpoint, etcd.endpoint], etcd_prefix, request_timeout=TIMEOUT
        )
        assert reg.endpoint == first.endpoint
        await asyncio.to_thread(first.stop)
        with pytest.raises(StoreUnavailable, match=first.endpoint):
            await reg.list_jobs()
        assert reg.endpoint == etcd.endpoint
        assert await reg.list_jobs() == []
        await reg.close()
    finally:
        first.stop()


def test_a_grpc_call_cancelled_by_task_cancellation_stays_a_cancellation() -> None:
    """grpc reports the cancellation of the awaiting task as status CANCELLED; as a
    StoreError it would be swallowed by retry loops and block shutdown."""
    cancelled = grpc.aio.AioRpcError(
        grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "Locally cancelled"
    )

    async def main() -> None:
        waiting = asyncio.Event()

        async def victim() -> object:
            try:
                waiting.set()
                await asyncio.Event().wait()  # until cancelled
            except asyncio.CancelledError:
                return translate(cancelled, "http://127.0.0.1:1")
            return None

        task = asyncio.create_task(victim())
        await waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Not being cancelled: an ordinary refusal.
        assert isinstance(translate(cancelled, "http://127.0.0.1:1"), StoreError)

    asyncio.run(main())


@async_test
async def test_registry_operations_are_counted_and_timed(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    metrics = FleetMetrics()
    registry = await EtcdRegistry.connect([etcd.endpoint], etcd_prefix, metrics=metrics)
    try:
        await registry.list_jobs()
        assert await registry.get_job("nothing.service") is None
    finally:
        await registry.close()
    text = metrics.render().decode()
    count = [
        line
        for line in text.splitlines()
        if line.startswith('fleet_registry_operation_count_total{operation="Range"}')
    ]
    assert count
    assert float(count[0].split()[-1]) >= 2
    assert 'fleet_registry_operation_duration_second_count{operation="Range"}' in text
