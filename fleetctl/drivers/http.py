"""A minimal blocking HTTP/1.1 client: one kept-alive connection to the fleet API.

fleetctl makes a handful of sequential requests per run; importing an HTTP
library for them cost more than the requests (httpx, httpcore, anyio and
asyncio: ~120 ms of every run, see docs/benchmarks.md). This speaks just what
the API driver needs over a unix socket, TCP or TLS (``ssl`` is imported by
the caller, for ``https`` only): one request at a time, ``Content-Length`` or
chunked bodies, or a body that ends with the connection. No redirects, proxies,
cookies or compression: the fleet API uses none. :meth:`HttpConnection.stream`
reads a never-ending answer (``GET /fleet/v1/watch``) line by line as it comes,
on a connection of its own. The ``--tunnel`` transport
stays on httpx (:mod:`fleetctl.ssh.transport`).

Errors: ``TimeoutError`` when the server does not answer in time, another
``OSError`` when it cannot be reached, :class:`ProtocolError` when what came
back is not HTTP.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import ssl

_MAX_LINE = 65536
_MAX_HEADERS = 100


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as we can read it."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpConnection:
    """Requests over one connection, opened on first use and again whenever the
    server closed it (between requests only: nothing is ever sent twice)."""

    def __init__(self, opener: Callable[[], socket.socket], host: str) -> None:
        self._open = opener
        self._host = host
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None

    @classmethod
    def unix(cls, path: str, *, timeout: float, host: str = "fleet") -> HttpConnection:
        def opener() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
            return sock

        return cls(opener, host)

    @classmethod
    def tcp(
        cls,
        host: str,
        port: int,
        *,
        timeout: float,
        netloc: str,
        tls: ssl.SSLContext | None = None,
    ) -> HttpConnection:
        def opener() -> socket.socket:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is None:
                return sock
            try:
                return tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise

        return cls(opener, netloc)

    def request(
        self, method: str, target: str, body: bytes | None = None, content_type: str = ""
    ) -> Reply:
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host}", "User-Agent: fleetctl"]
        head.append("Accept: application/json")
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
            if content_type:
                head.append(f"Content-Type: {content_type}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        sock, reader = self._connection()
        try:
            sock.sendall(data)
            reply, keep = _read_reply(reader, method)
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return reply

    def stream(
        self, target: str, read_timeout: float
    ) -> tuple[Reply, Generator[bytes, None, None]]:
        """GET ``target`` on a new connection: the answer's status (with the whole
        body when it is not a 200) and, for a 200, an iterator over the body's
        lines as they arrive, which closes the connection when it ends or is
        closed. ``read_timeout``: the longest silence the server may keep."""
        head = [f"GET {target} HTTP/1.1", f"Host: {self._host}", "User-Agent: fleetctl"]
        head.append("Accept: application/x-ndjson")
        sock = self._open()
        reader = sock.makefile("rb")

        def close() -> None:
            reader.close()
            sock.close()

        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            status, reason, headers, version = _head(reader)
            if status != 200:
                reply, _ = _read_body(
                    reader, "GET", status=status, reason=reason, headers=headers, version=version
                )
                close()
                return reply, _nothing()
            sock.settimeout(read_timeout)
        except BaseException:
            close()
            raise
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()

        def lines() -> Generator[bytes, None, None]:
            try:
                pending = b""
                pieces = _chunks(reader) if chunked else iter(reader.readline, b"")
                for piece in pieces:
                    pending += piece
                    *complete, pending = pending.split(b"\n")
                    yield from complete
            finally:
                close()

        return Reply(status, reason, b""), lines()

    def close(self) -> None:
        sock, reader, self._sock, self._reader = self._sock, self._reader, None, None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()

    def _connection(self) -> tuple[socket.socket, BinaryIO]:
        if self._sock is not None and self._reader is not None:
            # An idle kept-alive connection is readable only if the server closed it
            # (or broke the protocol): then start over before sending anything.
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return self._sock, self._reader
            self.close()
        self._sock = self._open()
        self._reader = self._sock.makefile("rb")
        return self._sock, self._reader


def _nothing() -> Generator[bytes, None, None]:
    yield from ()


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ProtocolError("header line too long")
    return line


def _head(reader: BinaryIO) -> tuple[int, str, dict[str, str], str]:
    while True:
        status_line = _line(reader)
        if not status_line:
            raise ProtocolError("the server closed the connection without answering")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP answer: {status_line[:80]!r}")
        headers = _headers(reader)
        status = int(code)
        if not 100 <= status < 200:
            # 1xx (100 Continue) are informational: the answer follows
            return status, reason, headers, version


def _read_reply(reader: BinaryIO, method: str) -> tuple[Reply, bool]:
    """The reply and whether the connection can carry another request."""
    status, reason, headers, version = _head(reader)
    return _read_body(
        reader, method, status=status, reason=reason, headers=headers, version=version
    )


def _read_body(
    reader: BinaryIO,
    method: str,
    *,
    status: int,
    reason: str,
    headers: dict[str, str],
    version: str,
) -> tuple[Reply, bool]:
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304):
        return Reply(status, reason, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Reply(status, reason, _chunked(reader)), keep
    length = headers.get("content-length")
    if length is None:
        return Reply(status, reason, reader.read()), False  # the body ends with the connection
    if not length.isdigit():
        raise ProtocolError(f"bad Content-Length {length!r}")
    body = reader.read(int(length))
    if len(body) != int(length):
        raise ProtocolError("the server closed the connection mid-answer")
    return Reply(status, reason, body), keep


def _headers(reader: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = _line(reader)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise ProtocolError("the server closed the connection mid-answer")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise ProtocolError("too many headers")


def _chunked(reader: BinaryIO) -> bytes:
    return b"".join(_chunks(reader))


def _chunks(reader: BinaryIO) -> Iterator[bytes]:
    """The chunks of a chunked body, each as soon as it has arrived."""
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while _line(reader) not in (b"\r\n", b"\n", b""):
                pass  # trailers: nothing fleet sends, skipped
            return
        chunk = reader.read(size)
        if len(chunk) != size or _line(reader) not in (b"\r\n", b"\n"):
            raise ProtocolError("the server closed the connection mid-answer")
        yield chunk
