"""fleetctl's blocking HTTP/1.1 client against a scripted server on a real unix socket:
the framings a fleet API may use (Content-Length, chunked like Go's net/http, a body
that ends with the connection), keep-alive and reconnecting, and what is not HTTP.
Also the blocking runner that lets API commands run without an event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetctl.blocking import BlockingClock, run_blocking
from fleetctl.drivers.http import HttpConnection, ProtocolError, Reply


@dataclass
class Scripted:
    """Answers the n-th request with ``answers[n]``; ``close_after`` holds the numbers
    of the requests after which it closes that connection."""

    path: str
    answers: Sequence[bytes]
    close_after: frozenset[int] = frozenset()
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def serve(self, server: socket.socket) -> None:
        while len(self.requests) < len(self.answers):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._answer(conn)
            self.closed.release()

    def _answer(self, conn: socket.socket) -> None:
        buffer = b""
        while len(self.requests) < len(self.answers):
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                buffer += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + buffer[:length])
            buffer = buffer[length:]
            number = len(self.requests) - 1
            conn.sendall(self.answers[number])
            if number in self.close_after:
                return


Start = Callable[..., Scripted]


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Start]:
    """``scripted(answers, close_after=())``: a started server."""
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(answers: Sequence[bytes], close_after: Sequence[int] = ()) -> Scripted:
        script = Scripted(str(tmp_path / f"s{len(servers)}.sock"), answers, frozenset(close_after))
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(script.path)
        server.listen()
        thread = threading.Thread(target=script.serve, args=(server,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return script

    yield start
    for server, thread in servers:
        server.close()
        thread.join(timeout=5)


def ok(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_content_length_and_keep_alive(scripted: Start) -> None:
    server = scripted([ok(b'{"a": 1}'), ok(b"[]", "Content-Type: application/json")])
    conn = HttpConnection.unix(server.path, timeout=5.0)
    try:
        assert conn.request("GET", "/fleet/v1/units").json() == {"a": 1}
        body = b'{"desiredState": "launched"}'
        assert conn.request("PUT", "/fleet/v1/units/a.service", body, "application/json") == (
            Reply(200, "OK", b"[]")
        )
    finally:
        conn.close()
    assert server.connections == 1  # one kept-alive connection for both
    first, second = server.requests
    assert first.startswith(b"GET /fleet/v1/units HTTP/1.1\r\nHost: fleet\r\n")
    assert b"User-Agent: fleetctl\r\n" in first
    assert b"Content-Length: 28\r\nContent-Type: application/json\r\n\r\n" + body in second


def test_chunked_answer_as_go_sends_it(scripted: Start) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\n4;ext=1\r\n 12}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    server = scripted([chunked, ok(b"{}")])
    conn = HttpConnection.unix(server.path, timeout=5.0)
    try:
        assert conn.request("GET", "/x").json() == {"a": 12}
        assert conn.request("GET", "/y").body == b"{}"  # the framing left nothing behind
    finally:
        conn.close()
    assert server.connections == 1


def test_informational_answers_are_skipped(scripted: Start) -> None:
    server = scripted([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")])
    conn = HttpConnection.unix(server.path, timeout=5.0)
    try:
        assert conn.request("GET", "/").body == b"done"
    finally:
        conn.close()


def test_reconnects_when_the_server_closed_between_requests(scripted: Start) -> None:
    server = scripted([ok(b"1"), ok(b"2", "Connection: close"), ok(b"3")], close_after=[0])
    conn = HttpConnection.unix(server.path, timeout=5.0)
    try:
        assert conn.request("GET", "/0").body == b"1"
        assert server.closed.acquire(timeout=5)  # the server has hung up: no race
        assert [conn.request("GET", f"/{i}").body for i in (1, 2)] == [b"2", b"3"]
    finally:
        conn.close()
    # Closed silently after the first, announced after the second: three connections,
    # and every request was sent exactly once.
    assert server.connections == 3
    assert len(server.requests) == 3


def test_body_until_the_connection_ends(scripted: Start) -> None:
    server = scripted([b"HTTP/1.0 404 Not Found\r\n\r\nno such thing"], close_after=[0])
    conn = HttpConnection.unix(server.path, timeout=5.0)
    try:
        assert conn.request("GET", "/") == Reply(404, "Not Found", b"no such thing")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer", id="not-http"),
        pytest.param(b"", "closed the connection without answering", id="nothing"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "mid-answer", id="short"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "bad chunk size",
            id="bad-chunk",
        ),
    ],
)
def test_what_is_not_http_is_a_protocol_error(scripted: Start, answer: bytes, message: str) -> None:
    server = scripted([answer], close_after=[0])
    conn = HttpConnection.unix(server.path, timeout=5.0)
    try:
        with pytest.raises(ProtocolError, match=message):
            conn.request("GET", "/")
    finally:
        conn.close()


def test_unreachable_socket_is_an_os_error(tmp_path: Path) -> None:
    conn = HttpConnection.unix(str(tmp_path / "none.sock"), timeout=1.0)
    with pytest.raises(FileNotFoundError):
        conn.request("GET", "/")


def test_run_blocking_runs_a_coroutine_that_never_suspends() -> None:
    async def body() -> str:
        await BlockingClock().sleep(0)
        async with BlockingClock().timeout(5):
            return "done"

    assert run_blocking(body()) == "done"


def test_run_blocking_refuses_a_coroutine_that_suspends() -> None:
    cleaned: list[bool] = []

    async def body() -> None:
        try:
            await asyncio.sleep(0)
        finally:
            cleaned.append(True)

    with pytest.raises(RuntimeError, match="needs an event loop"):
        run_blocking(body())
    assert cleaned == [True]  # closed, its finally blocks ran
