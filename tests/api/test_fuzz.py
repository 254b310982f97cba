"""API fuzzing: schemathesis generates requests (valid and invalid) from the
app's own OpenAPI schema and sends them to the app served for real on TCP
over the real registry. Whatever it sends, the API must answer with a 4xx or
a success, never a 500 or a dropped connection."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from fleet.api.app import create_app
from fleet.api.server import close_listeners, open_listeners, serve_listeners
from fleet.cluster.etcd import EtcdProcess
from fleet.registry.etcd import EtcdRegistry
from tests.api.support import VERSION, free_tcp_port

FUZZ_EXAMPLES = 50


class ThreadedServer:
    """The API served by uvicorn in its own thread and event loop: schemathesis
    calls are synchronous (requests), so the server cannot share their thread."""

    def __init__(self, etcd: EtcdProcess, prefix: str) -> None:
        self.port = free_tcp_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._etcd, self._prefix = etcd, prefix
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-api", daemon=True)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        registry = await EtcdRegistry.connect(
            [self._etcd.endpoint], self._prefix, request_timeout=2.0
        )
        app = create_app(registry, machine_id="fuzz", version=VERSION)
        listeners = open_listeners(unix_path=None, listen_fds=[], tcp=[("127.0.0.1", self.port)])
        try:
            self._task = asyncio.create_task(serve_listeners(app, listeners, graceful_shutdown=1))
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            close_listeners(listeners)
            await registry.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(20)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(20)
        assert not self._thread.is_alive(), "fuzz server did not stop"


@pytest.fixture(scope="module")
def fuzz_server(etcd: EtcdProcess) -> Iterator[ThreadedServer]:
    server = ThreadedServer(etcd, "/fleet-test/fuzz/")
    server.start()
    yield server
    server.stop()


def _operations() -> list[Any]:
    # The schema comes from the app itself: no registry is needed to describe it.
    app = create_app(None, machine_id="fuzz", version=VERSION)  # type: ignore[arg-type]
    loaded = schemathesis.openapi.from_dict(app.openapi())
    return [cast(Any, result).ok() for result in loaded.get_all_operations()]


def _cases() -> list[Any]:
    cases = []
    for op in _operations():
        cases.append(pytest.param(op, GenerationMode.POSITIVE, id=f"{op.label} valid"))
        # Only a query or a body can be made invalid: any string is a valid path parameter.
        if len(op.query) or len(op.body):
            cases.append(pytest.param(op, GenerationMode.NEGATIVE, id=f"{op.label} invalid"))
    return cases


@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_api_never_answers_500(
    operation: Any, mode: GenerationMode, fuzz_server: ThreadedServer
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(
            base_url=fuzz_server.base_url, checks=[not_a_server_error], timeout=10
        )
        assert response.status_code < 500
        assert response.headers["server"] == [f"fleetd/{VERSION}"]

    fuzz()
