"""API fuzzing: schemathesis generates requests (valid and invalid) from the
app's own OpenAPI schema and sends them to the app served for real on TCP
over the real registry. Whatever it sends, the API must answer with a 4xx or
a success, never a 500 or a dropped connection. Hypothesis adds what a schema
cannot describe: units and bodies around fleet's size limits (at the limit
accepted, one byte over and far over refused with a 413, never a 5xx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from fleet.api.app import create_app
from fleet.api.server import close_listeners, open_listeners, serve_listeners
from fleet.api.wire import MAX_BODY_BYTES
from fleet.cluster.etcd import EtcdProcess
from fleet.core.limits import MAX_UNIT_BYTES
from fleet.registry.etcd import EtcdRegistry
from tests.api.support import VERSION, free_tcp_port
from tests.unitsizes import ASCII, CONTROL, EMOJI, options_json, unit_of_size

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
            [self._etcd.endpoint], self._prefix, request_timeout=10.0
        )  # generous: this test is about answers to odd input, not etcd latency
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


# --- around the size limits ------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}
SMALL = [{"section": "Service", "name": "ExecStart", "value": "/bin/true"}]


def _sizes(limit: int, far: list[int]) -> st.SearchStrategy[int]:
    # The neighbourhood of the limit and sizes far over; the limit itself and one
    # byte over are explicit examples.
    return st.one_of(st.integers(limit - 64, limit + 64), st.sampled_from(far))


def _put(server: ThreadedServer, name: str, content: bytes) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        response = client.put(f"/fleet/v1/units/{name}", content=content, headers=JSON)
    assert response.status_code < 500, response.text
    assert response.headers["server"] == f"fleetd/{VERSION}"
    return response


def test_units_around_the_size_limit(fuzz_server: ThreadedServer) -> None:
    @given(
        size=_sizes(MAX_UNIT_BYTES, [2 * MAX_UNIT_BYTES, 2_000_000]),
        char=st.sampled_from([ASCII, CONTROL, EMOJI]),
    )
    @example(size=MAX_UNIT_BYTES, char=ASCII)
    @example(size=MAX_UNIT_BYTES, char=CONTROL)  # the registry's worst case fits etcd
    @example(size=MAX_UNIT_BYTES + 1, char=ASCII)
    @example(size=2_000_000, char=ASCII)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)
    def fuzz(size: int, char: str) -> None:
        unit = unit_of_size(size, char)
        raw = json.dumps({"desiredState": "inactive", "options": options_json(unit)}).encode()
        response = _put(fuzz_server, "size.service", raw)
        if size <= MAX_UNIT_BYTES:
            assert response.status_code in (201, 204), response.text  # 204: same file again
            return
        assert response.status_code == 413, response.text
        message = response.json()["error"]["message"]
        if len(raw) > MAX_BODY_BYTES:  # escaped characters far over: the body's limit first
            assert message.startswith("request body too large: "), message
        else:
            assert message == (
                f"unit size.service is too large: {size} bytes, "
                f"the limit is {MAX_UNIT_BYTES} bytes (128 KiB)"
            )

    fuzz()


def test_bodies_around_the_size_limit(fuzz_server: ThreadedServer) -> None:
    @given(size=_sizes(MAX_BODY_BYTES, [2 * MAX_BODY_BYTES, 20_000_000]))
    @example(size=MAX_BODY_BYTES)
    @example(size=MAX_BODY_BYTES + 1)
    @example(size=20_000_000)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)
    def fuzz(size: int) -> None:
        raw = json.dumps({"desiredState": "inactive", "options": SMALL}).encode()
        response = _put(fuzz_server, "body.service", raw + b" " * (size - len(raw)))
        if size <= MAX_BODY_BYTES:
            assert response.status_code in (201, 204), response.text
        else:
            assert response.status_code == 413, response.text
            assert response.json()["error"]["message"] == (
                f"request body too large: {size} bytes, the limit is {MAX_BODY_BYTES} bytes (2 MiB)"
            )

    fuzz()
