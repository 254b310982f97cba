"""Harness: serve the API for real, in the test's own event loop.

pytest here has no asyncio plugin: :func:`async_test` runs a coroutine test in
a fresh event loop with an overall deadline. :func:`served_api` starts the app
on a unix socket in a private directory and hands back an httpx client for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from fleet.api.app import create_app
from fleet.api.server import Listener, close_listeners, open_listeners, serve_listeners
from fleet.cluster.etcd import EtcdProcess
from fleet.metrics import FleetMetrics
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import eventually

VERSION = "9.9.9-test"
MACHINE_ID = "0123456789abcdef0123456789abcdef"


@contextlib.contextmanager
def short_tmpdir() -> Any:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="fleet-api-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def wait_listening(path: str) -> None:
    async def probe() -> bool:
        try:
            _, writer = await asyncio.open_unix_connection(path)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await eventually(probe, timeout=5.0)


@dataclass
class ReadySwitch:
    """What the daemon passes as ``ready``: flipped by the test."""

    value: bool = True

    def __call__(self) -> bool:
        return self.value


@dataclass
class Served:
    app: FastAPI
    registry: EtcdRegistry
    client: httpx.AsyncClient
    socket_path: str
    metrics: FleetMetrics
    ready: ReadySwitch
    listeners: list[Listener] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serving(app: FastAPI, listeners: list[Listener]) -> AsyncIterator[asyncio.Task[None]]:
    """Serve ``app`` on ``listeners`` until the block ends, then stop cleanly."""
    task = asyncio.create_task(serve_listeners(app, listeners, graceful_shutdown=1.0))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def served_api(
    etcd: EtcdProcess,
    prefix: str,
    *,
    token_limit: int = 100,
    ready: bool = True,
) -> AsyncIterator[Served]:
    with short_tmpdir() as tmp:
        registry = await EtcdRegistry.connect([etcd.endpoint], prefix, request_timeout=2.0)
        switch = ReadySwitch(ready)
        metrics = FleetMetrics()
        app = create_app(
            registry,
            machine_id=MACHINE_ID,
            version=VERSION,
            ready=switch,
            token_limit=token_limit,
            metrics=metrics,
        )
        path = str(tmp / "fleet.sock")
        listeners = open_listeners(unix_path=path, listen_fds=[])
        try:
            async with serving(app, listeners):
                await wait_listening(path)
                transport = httpx.AsyncHTTPTransport(uds=path)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://fleet", timeout=10.0
                ) as client:
                    yield Served(app, registry, client, path, metrics, switch, listeners)
        finally:
            close_listeners(listeners)
            await registry.close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
