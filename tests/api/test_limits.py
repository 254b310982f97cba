"""Size limits on the wire: a unit over fleet's limit and a request body over the
API's are refused with a 413 naming the size and the limit, bad shapes of every
kind with a 400, and nothing is ever written (the keyspace is compared whole)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleet.api.wire import MAX_BODY_BYTES
from fleet.cluster.etcd import EtcdProcess
from fleet.core.limits import MAX_UNIT_BYTES
from fleet.core.model import DesiredState, Machine
from fleet.core.unitfile import LINE_MAX, UnitFile
from tests.api.support import Served, served_api
from tests.asyncsupport import async_test
from tests.registry.support import dump
from tests.unitsizes import ASCII, CONTROL, EMOJI, options_json, unit_of_size

JSON = {"Content-Type": "application/json"}
SMALL = [{"section": "Service", "name": "ExecStart", "value": "/bin/true"}]
UNIT_LIMIT = f"the limit is {MAX_UNIT_BYTES} bytes (128 KiB)"
BODY_LIMIT = f"the limit is {MAX_BODY_BYTES} bytes (2 MiB)"
TWENTY_MB = 20_000_000


def envelope(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def put_raw(api: Served, name: str, content: bytes | AsyncIterator[bytes]) -> Any:
    return await api.client.put(f"/fleet/v1/units/{name}", content=content, headers=JSON)


async def put_unit(api: Served, name: str, unit: UnitFile) -> Any:
    body = {"desiredState": "launched", "options": options_json(unit)}
    return await put_raw(api, name, json.dumps(body).encode())


def padded(payload: dict[str, Any], size: int) -> bytes:
    """``payload`` as JSON of exactly ``size`` bytes (trailing whitespace is valid JSON)."""
    raw = json.dumps(payload).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


# --- the unit size limit ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "char", [pytest.param(ASCII, id="ascii"), pytest.param(CONTROL, id="control-characters")]
)
def test_unit_at_the_limit_is_created(etcd: EtcdProcess, etcd_prefix: str, char: str) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            unit = unit_of_size(MAX_UNIT_BYTES, char)
            r = await put_unit(api, "big.service", unit)
            assert (r.status_code, r.content) == (201, b"")
            assert await api.registry.get_unit_body(unit.hash) == unit.serialize()
            got = await api.client.get("/fleet/v1/units/big.service")
            assert got.status_code == 200
            assert got.json()["options"] == options_json(unit)

    run()


@pytest.mark.parametrize(
    ("size", "char"),
    [
        pytest.param(MAX_UNIT_BYTES + 1, ASCII, id="one-byte-over"),
        pytest.param(MAX_UNIT_BYTES + 1, EMOJI, id="one-byte-over-4-byte-characters"),
        pytest.param(2_000_000, ASCII, id="2-MB"),
    ],
)
def test_unit_over_the_limit_is_413_and_nothing_is_written(
    etcd: EtcdProcess, etcd_prefix: str, size: int, char: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            before = await dump(api.registry)
            r = await put_unit(api, "big.service", unit_of_size(size, char))
            assert r.status_code == 413
            assert r.json() == envelope(
                413, f"unit big.service is too large: {size} bytes, {UNIT_LIMIT}"
            )
            assert await dump(api.registry) == before

    run()


def test_replacing_a_unit_with_one_over_the_limit_keeps_the_old_one(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await put_raw(api, "a.service", json.dumps({"options": SMALL}).encode())
            assert r.status_code == 201
            before = await dump(api.registry)
            r = await put_unit(api, "a.service", unit_of_size(MAX_UNIT_BYTES + 1))
            assert r.status_code == 413
            assert await dump(api.registry) == before

    run()


def test_too_many_options_is_the_unit_limit(etcd: EtcdProcess, etcd_prefix: str) -> None:
    # 40000 options fit the request body but not the unit: there is no count
    # limit of its own, the size limit bounds it (fewer than 44000 options).
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            options = [{"section": "Service", "name": "A", "value": "1"}] * 40000
            r = await put_raw(api, "many.service", json.dumps({"options": options}).encode())
            assert r.status_code == 413
            assert r.json()["error"]["message"] == (
                f"unit many.service is too large: 160010 bytes, {UNIT_LIMIT}"
            )
            assert await dump(api.registry) == {}

    run()


# --- the request body limit ------------------------------------------------------------------


def test_body_of_exactly_the_limit_is_read(etcd: EtcdProcess, etcd_prefix: str) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await put_raw(api, "a.service", padded({"options": SMALL}, MAX_BODY_BYTES))
            assert r.status_code == 201

    run()


@pytest.mark.parametrize(
    "size",
    [pytest.param(MAX_BODY_BYTES + 1, id="one-byte-over"), pytest.param(TWENTY_MB, id="20-MB")],
)
def test_body_over_the_limit_is_413_and_nothing_is_written(
    etcd: EtcdProcess, etcd_prefix: str, size: int
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await put_raw(api, "a.service", padded({"options": SMALL}, size))
            assert r.status_code == 413
            assert r.json() == envelope(413, f"request body too large: {size} bytes, {BODY_LIMIT}")
            assert await dump(api.registry) == {}
            # The connection, or the next one, still serves.
            assert (await api.client.get("/fleet/v1/units")).status_code == 200

    run()


async def status_of_raw_put(api: Served, head: bytes, body: bytes) -> bytes:
    """Send a PUT's head and the start of its body, and read the status line
    without sending the rest: the server must answer before the body is over."""
    reader, writer = await asyncio.open_unix_connection(api.socket_path)
    try:
        writer.write(
            b"PUT /fleet/v1/units/a.service HTTP/1.1\r\nHost: fleet\r\n"
            b"Content-Type: application/json\r\n" + head + b"\r\n" + body
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        return status.split()[1]
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def test_body_without_length_is_cut_off_at_the_limit(etcd: EtcdProcess, etcd_prefix: str) -> None:
    # Chunked, with no end in sight: the answer comes once the limit is passed.
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            chunk = b" " * 65536
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(40))
            head = b"Transfer-Encoding: chunked\r\n"
            assert await status_of_raw_put(api, head, chunks) == b"413"
            r = await put_raw(api, "a.service", streamed(TWENTY_MB))
            assert r.json() == envelope(
                413, f"request body too large: over the limit of {MAX_BODY_BYTES} bytes (2 MiB)"
            )
            assert await dump(api.registry) == {}

    run()


async def streamed(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 65536):
        yield b" " * 65536


@pytest.mark.parametrize(
    "expect",
    [
        pytest.param(b"Expect: 100-continue\r\n", id="expect-100-continue"),
        pytest.param(b"", id="plain"),
    ],
)
def test_body_announced_too_large_is_refused_before_it_is_sent(
    etcd: EtcdProcess, etcd_prefix: str, expect: bytes
) -> None:
    # Judged on its Content-Length: a client waiting for "100 Continue" (curl
    # does, for large bodies) gets the 413 without sending a byte of the body.
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            head = expect + f"Content-Length: {TWENTY_MB}\r\n".encode()
            assert await status_of_raw_put(api, head, b"") == b"413"
            assert await dump(api.registry) == {}

    run()


# --- bad shapes: always a 400 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"[" * 100_000, "unable to decode body: JSON nested too deeply", id="deeply-nested"
        ),
        pytest.param(
            b'{"options": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            "unable to decode body: JSON nested too deeply",
            id="deeply-nested-valid",
        ),
        pytest.param(
            json.dumps({"options": [{"section": "S", "name": "A", "value": "x" * LINE_MAX}]}),
            f"invalid unit file option: option A is longer than {LINE_MAX} bytes",
            id="option-value-too-long",
        ),
        pytest.param(
            json.dumps({"options": [{"section": "S" * LINE_MAX, "name": "A", "value": "x"}]}),
            f"invalid unit file option: section header is longer than {LINE_MAX} bytes",
            id="section-name-too-long",
        ),
        pytest.param(
            json.dumps({"desiredState": "\ud800", "options": SMALL}),
            'invalid desiredState "\\ud800": expect inactive, loaded or launched',
            id="lone-surrogate-echoed-escaped",
        ),
        pytest.param(
            json.dumps({"options": [{"section": "S", "name": "A", "value": "\ud800"}]}),
            "invalid unit file option: option A is not valid UTF-8",
            id="lone-surrogate-in-value",
        ),
    ],
)
def test_bad_bodies_are_400_and_nothing_is_written(
    etcd: EtcdProcess, etcd_prefix: str, content: str | bytes, message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            raw = content.encode() if isinstance(content, str) else content
            r = await put_raw(api, "a.service", raw)
            assert (r.status_code, r.json()) == (400, envelope(400, message))
            assert await dump(api.registry) == {}

    run()


@pytest.mark.parametrize(
    ("op", "message"),
    [
        pytest.param(
            {"op": "add", "path": "/m1/metadata/k", "value": "x" * (LINE_MAX + 1)},
            f"invalid value: longer than {LINE_MAX} bytes",
            id="value-too-long",
        ),
        pytest.param(
            {"op": "add", "path": "/" + "m" * LINE_MAX + "/metadata/k", "value": "x"},
            f"machine metadata path invalid: longer than {LINE_MAX} bytes",
            id="machine-id-too-long",
        ),
        pytest.param(
            {"op": "remove", "path": "/m1/metadata/" + "k" * LINE_MAX},
            f"machine metadata path invalid: longer than {LINE_MAX} bytes",
            id="key-too-long",
        ),
        pytest.param(
            {"op": "add", "path": "/m1/metadata/k", "value": "\ud800"},
            "invalid value: not valid UTF-8",
            id="value-lone-surrogate",
        ),
        pytest.param(
            {"op": "add", "path": "/m\ud800/metadata/k", "value": "x"},
            "machine metadata path invalid: not valid UTF-8",
            id="path-lone-surrogate",
        ),
    ],
)
def test_bad_metadata_is_400_and_nothing_is_written(
    etcd: EtcdProcess, etcd_prefix: str, op: dict[str, Any], message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine("m1", "10.0.0.1"), ttl=30)
            before = await dump(api.registry)
            ok = {"op": "add", "path": "/m1/metadata/ok", "value": "x" * LINE_MAX}
            r = await api.client.patch(
                "/fleet/v1/machines", content=json.dumps([ok, op]), headers=JSON
            )
            assert (r.status_code, r.json()) == (400, envelope(400, message))
            assert await dump(api.registry) == before  # not even the good op before it
            machines = await api.client.get("/fleet/v1/machines")
            assert machines.status_code == 200

    run()


def test_metadata_value_at_the_limit_is_set(etcd: EtcdProcess, etcd_prefix: str) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine("m1", "10.0.0.1"), ttl=30)
            value = "x" * LINE_MAX
            op = {"op": "add", "path": "/m1/metadata/k", "value": value}
            r = await api.client.patch("/fleet/v1/machines", content=json.dumps([op]), headers=JSON)
            assert r.status_code == 204
            machines = (await api.client.get("/fleet/v1/machines")).json()["machines"]
            assert machines[0]["metadata"] == {"k": value}

    run()


def test_a_desired_state_change_is_not_limited(etcd: EtcdProcess, etcd_prefix: str) -> None:
    # Only a write of a unit's file is judged by its size.
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            big = unit_of_size(MAX_UNIT_BYTES + 1)
            await api.registry.replace_unit(
                "big.service", big.serialize(), big.hash, DesiredState.INACTIVE, is_global=False
            )
            r = await put_raw(api, "big.service", json.dumps({"desiredState": "loaded"}).encode())
            assert r.status_code == 204

    run()
