"""The ``--tunnel`` transport of the API driver: httpx connections over SSH channels.

:func:`tunnel_transport` gives httpx a connection pool that dials through one
:class:`~fleetctl.tunnel.SSHConnection`: a ``direct-tcpip`` channel for a TCP
endpoint, or ``fleetctl fd-forward <socket>`` run on the far side for a unix
one. TLS for ``https://`` endpoints is spoken inside the channel; paramiko's
blocking calls run in threads so the event loop keeps going.
"""

from __future__ import annotations

import asyncio
import shlex
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpcore
import httpx
import paramiko

from fleetctl.tunnel import FD_FORWARD_COMMAND

if TYPE_CHECKING:
    from fleetctl.tunnel import SSHConnection

_T = TypeVar("_T")


class _ChannelStream(httpcore.AsyncNetworkStream):
    """An HTTP connection carried by one SSH channel (blocking paramiko calls are
    moved to a thread so the event loop keeps running)."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self._chan = chan
        self._lock = threading.Lock()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        def recv() -> bytes:
            self._chan.settimeout(timeout)
            try:
                return bytes(self._chan.recv(max_bytes))
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(str(exc)) from exc

        return await asyncio.to_thread(recv)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            await asyncio.to_thread(self._chan.sendall, buffer)

    async def aclose(self) -> None:
        self._chan.close()

    def get_extra_info(self, info: str) -> Any:
        return None

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = _TLSStream(self, ssl_context, server_hostname)
        try:
            await tls.handshake(timeout)
        except BaseException:
            await self.aclose()
            raise
        return tls


class _TLSStream(httpcore.AsyncNetworkStream):
    """TLS spoken over another stream (an SSH channel), for ``https://`` endpoints
    through ``--tunnel``: an in-memory ``SSLObject`` whose encrypted bytes the
    inner stream carries."""

    def __init__(
        self, inner: _ChannelStream, context: ssl.SSLContext, hostname: str | None
    ) -> None:
        self._inner = inner
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=hostname)

    async def _drive(self, op: Callable[[], _T], timeout: float | None) -> _T:
        """Run one SSLObject operation, moving bytes until it completes."""
        while True:
            try:
                result = op()
            except ssl.SSLWantReadError:
                await self._flush(timeout)
                data = await self._inner.read(65536, timeout)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            except ssl.SSLError as exc:
                raise httpcore.ConnectError(f"TLS through the SSH tunnel failed: {exc}") from exc
            await self._flush(timeout)
            return result

    async def _flush(self, timeout: float | None) -> None:
        if pending := self._outgoing.read():
            await self._inner.write(pending, timeout)

    async def handshake(self, timeout: float | None) -> None:
        await self._drive(self._tls.do_handshake, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await self._drive(lambda: self._tls.read(max_bytes), timeout)
        except httpcore.ConnectError as exc:
            if isinstance(exc.__cause__, ssl.SSLZeroReturnError):
                return b""  # the server closed the TLS session cleanly
            raise

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            await self._drive(lambda: self._tls.write(buffer), timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._tls
        return None


class _TunnelBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, conn: SSHConnection, fd_forward: str) -> None:
        self._conn = conn
        self._fd_forward = fd_forward

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        def dial() -> paramiko.Channel:
            try:
                return self._conn.transport.open_channel(
                    "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout
                )
            except (paramiko.SSHException, OSError) as exc:
                raise httpcore.ConnectError(
                    f"cannot reach {host}:{port} from {self._conn.host_id}: {exc}"
                ) from exc

        return _ChannelStream(await asyncio.to_thread(dial))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        def dial() -> paramiko.Channel:
            chan = self._conn.transport.open_session(timeout=timeout)
            chan.exec_command(f"{self._fd_forward} {shlex.quote(path)}")
            return chan

        return _ChannelStream(await asyncio.to_thread(dial))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def tunnel_transport(
    conn: SSHConnection,
    *,
    uds: str | None,
    fd_forward: str = FD_FORWARD_COMMAND,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncBaseTransport:
    """An httpx transport whose connections are SSH channels of ``conn``: a
    ``direct-tcpip`` channel for TCP endpoints, or ``fleetctl fd-forward <socket>``
    run on the far side for a unix endpoint. One connection, kept alive.
    ``ssl_context`` is used for ``https://`` URLs (TLS inside the channel)."""
    # verify=False: this transport's own context is never used (the pool below is),
    # and building httpx's default one (the CA bundle) costs ~15 ms per run.
    transport = httpx.AsyncHTTPTransport(uds=uds, verify=False)
    # httpx builds its pool without a way to pass a network backend; swap the pool
    # for one that dials through SSH (httpx is pinned; tests cover this).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        uds=uds,
        max_connections=1,
        network_backend=_TunnelBackend(conn, fd_forward),
    )
    return transport
