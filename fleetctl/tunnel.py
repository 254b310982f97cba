"""SSH for fleetctl (paramiko): host-key checking, authentication, the
``--tunnel`` transport for the API client and remote commands.

Commands never talk SSH themselves: the context asks this module for an httpx
transport (``--tunnel``) or for an :class:`SSHConnection` to a machine
(``ssh``, ``status``, ``journal``). Rules measured in shared/reference/deps.md §3:
``TCP_NODELAY`` on every transport socket (without it each request stalls about
40 ms), host keys checked against our own known_hosts file with fleet's prompt
for unknown hosts and an OpenSSH-style refusal for changed ones, and one
long-lived channel per invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shlex
import socket
import ssl
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import httpcore
import httpx
import paramiko

from fleet.errors import FleetError, HostKeyMismatch, HostKeyUnknown, SSHError
from fleetctl.fdforward import fd_forward

if TYPE_CHECKING:
    from fleetctl.client import ClientSettings

_T = TypeVar("_T")

DEFAULT_PORT = 22
FD_FORWARD_COMMAND = "fleetctl fd-forward"


@dataclass(frozen=True)
class SSHSettings:
    username: str = "core"
    timeout: float = 10.0
    known_hosts_file: Path = field(
        default_factory=lambda: Path("~/.fleetctl/known_hosts").expanduser()
    )
    strict_host_key_checking: bool = True
    identity_files: tuple[Path, ...] = ()
    # Where answers to the unknown-host prompt come from, and where it is printed.
    prompt_in: TextIO = field(default=sys.stdin, compare=False)
    prompt_out: TextIO = field(default=sys.stderr, compare=False)


def split_host_port(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        host, port = address, ""
    if not host:
        raise FleetError(f"invalid SSH address {address!r}")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise FleetError(f"invalid port in SSH address {address!r}") from None


def known_hosts_id(host: str, port: int) -> str:
    """OpenSSH's known_hosts spelling: the default port is omitted."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


_ALGO_NAMES = {"ssh-rsa": "RSA", "ssh-dss": "DSA", "ssh-ed25519": "ED25519"}


def algo_name(key: paramiko.PKey) -> str:
    name = str(key.get_name())
    if name.startswith("ecdsa-"):
        return "ECDSA"
    return _ALGO_NAMES.get(name, name.upper())


def md5_fingerprint(key: paramiko.PKey) -> str:
    return ":".join(f"{b:02x}" for b in key.get_fingerprint())


class KnownHosts:
    """An OpenSSH-format known_hosts file (hashed hosts and @markers are not supported
    and are ignored, as in fleet). Only this file is consulted, never ~/.ssh."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _entries(self) -> Iterator[tuple[list[str], str, str]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SSHError(f"cannot read known hosts file {self.path}: {exc.strerror}") from exc
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 3 or fields[0].startswith(("#", "@", "|")):
                continue
            yield fields[0].split(","), fields[1], fields[2]

    def check(self, host_id: str, key: paramiko.PKey) -> bool:
        """True if known with this key; False if unknown; HostKeyMismatch if known with another."""
        offered = key.get_base64()
        known_other = False
        for hosts, _algo, blob in self._entries():
            if host_id not in hosts:
                continue
            if blob == offered:
                return True
            known_other = True
        if known_other:
            raise HostKeyMismatch(_mismatch_banner(host_id, key, self.path))
        return False

    def add(self, host_id: str, key: paramiko.PKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path, "a") as f:
            f.write(f"{host_id} {key.get_name()} {key.get_base64()}\n")


def _mismatch_banner(host_id: str, key: paramiko.PKey, path: Path) -> str:
    rule = "@" * 59
    return "\n".join(
        [
            rule,
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
            rule,
            "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!",
            "Someone could be eavesdropping on you right now (man-in-the-middle attack)!",
            "It is also possible that a host key has just been changed.",
            f"The fingerprint for the {algo_name(key)} key sent by the remote host {host_id} is",
            f"{md5_fingerprint(key)}.",
            "Please contact your system administrator.",
            f"Add correct host key in {path} to get rid of this message.",
            f"Host key verification failed for {host_id}: connection aborted.",
        ]
    )


def verify_host_key(host_id: str, key: paramiko.PKey, settings: SSHSettings) -> None:
    """Accept a known key, prompt for an unknown one (fleet's wording), refuse a changed one."""
    if not settings.strict_host_key_checking:
        return
    known = KnownHosts(settings.known_hosts_file)
    if known.check(host_id, key):
        return
    out = settings.prompt_out
    out.write(
        f"The authenticity of host '{host_id}' can't be established.\n"
        f"{algo_name(key)} key fingerprint is {md5_fingerprint(key)}.\n"
        "Are you sure you want to continue connecting (yes/no)? "
    )
    out.flush()
    line = settings.prompt_in.readline()
    if not line.endswith("\n"):
        out.write("\n")  # no answer at all (EOF): end the prompt's line
    answer = line.strip().lower()
    if answer not in ("yes", "y"):
        raise HostKeyUnknown(f"host key verification failed for {host_id}: not accepted")
    known.add(host_id, key)
    out.write(
        f"Warning: Permanently added '{host_id}' ({algo_name(key)}) to the list of known hosts.\n"
    )


def _identity_keys(settings: SSHSettings) -> Iterator[paramiko.PKey]:
    """ssh-agent keys first, then the given identity files, then ~/.ssh/id_*."""
    if os.environ.get("SSH_AUTH_SOCK"):
        with contextlib.suppress(paramiko.SSHException, OSError):
            yield from paramiko.Agent().get_keys()
    files = list(settings.identity_files)
    if not files:
        home = Path("~/.ssh").expanduser()
        files = [home / n for n in ("id_ed25519", "id_ecdsa", "id_rsa")]
    for path in files:
        if not path.exists():
            if path in settings.identity_files:
                raise SSHError(f"identity file {path} does not exist")
            continue
        try:
            yield paramiko.PKey.from_path(path)
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise SSHError(f"cannot load identity file {path}: {exc}") from exc


class SSHConnection:
    """One authenticated SSH transport to a host (possibly through another one)."""

    def __init__(self, transport: paramiko.Transport, host_id: str) -> None:
        self.transport = transport
        self.host_id = host_id

    @classmethod
    def open(
        cls, address: str, settings: SSHSettings, *, via: SSHConnection | None = None
    ) -> SSHConnection:
        host, port = split_host_port(address)
        host_id = known_hosts_id(host, port)
        sock: Any
        try:
            if via is None:
                raw = socket.create_connection((host, port), timeout=settings.timeout)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = raw
            else:
                sock = via.transport.open_channel(
                    "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=settings.timeout
                )
            transport = paramiko.Transport(sock)
            transport.start_client(timeout=settings.timeout)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise SSHError(f"cannot connect to {host_id} over SSH: {exc}") from exc
        try:
            verify_host_key(host_id, transport.get_remote_server_key(), settings)
            cls._authenticate(transport, host_id, settings)
        except BaseException:
            transport.close()
            raise
        return cls(transport, host_id)

    @staticmethod
    def _authenticate(transport: paramiko.Transport, host_id: str, settings: SSHSettings) -> None:
        tried = 0
        for key in _identity_keys(settings):
            tried += 1
            with contextlib.suppress(paramiko.AuthenticationException):
                transport.auth_publickey(settings.username, key)
                if transport.is_authenticated():
                    return
        if tried == 0:
            raise SSHError(
                f"no SSH key to authenticate to {host_id}: start ssh-agent (SSH_AUTH_SOCK) "
                "or give --ssh-identity-file"
            )
        raise SSHError(f"SSH authentication as {settings.username!r} to {host_id} failed")

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- remote commands -------------------------------------------------------------

    def run(
        self,
        command: str,
        *,
        forward_agent: bool = False,
        pty: bool = False,
        stdout: Any = None,
        stderr: Any = None,
    ) -> int:
        """Run ``command`` (or an interactive shell when empty) and return its exit status,
        copying its output to ours as it comes (``journal -f`` streams until interrupted)."""
        chan = self.transport.open_session(timeout=30)
        if forward_agent:
            paramiko.agent.AgentRequestHandler(chan)
        interactive = pty and sys.stdin.isatty()
        if interactive:
            cols, rows = os.get_terminal_size()
            chan.get_pty(term="xterm-256color", width=cols, height=rows)
        if command:
            chan.exec_command(command)
        else:
            chan.invoke_shell()
        if interactive:
            _interactive(chan)
        else:
            _pump(chan, stdout or sys.stdout.buffer, stderr or sys.stderr.buffer)
        status = chan.recv_exit_status()
        chan.close()
        return int(status)


def _pump(chan: paramiko.Channel, out: Any, err: Any) -> None:
    while True:
        ready, _, _ = select.select([chan], [], [], 1.0)
        if ready or chan.recv_ready() or chan.recv_stderr_ready():
            got = False
            while chan.recv_stderr_ready():
                err.write(chan.recv_stderr(32768))
                got = True
            if chan.recv_ready():
                data = chan.recv(32768)
                if data:
                    out.write(data)
                    got = True
            out.flush()
            err.flush()
            if not got and chan.exit_status_ready() and not chan.recv_ready():
                break
        elif chan.exit_status_ready():
            break


def _interactive(chan: paramiko.Channel) -> None:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        while True:
            ready, _, _ = select.select([chan, fd], [], [])
            if chan in ready:
                data = chan.recv(32768)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if fd in ready:
                data = os.read(fd, 1024)
                if not data:
                    break
                chan.sendall(data)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# -- the --tunnel transport for httpx --------------------------------------------------


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


# -- a local TCP forward (the etcd driver through --tunnel) ---------------------------------


class LocalForward:
    """A listening socket on 127.0.0.1 whose every accepted connection is carried
    by a new ``direct-tcpip`` channel of ``conn`` to ``host:port`` (as routed from
    the SSH server). gRPC clients such as aetcd cannot be handed a custom
    transport, so they are pointed at :attr:`address` instead."""

    def __init__(self, conn: SSHConnection, host: str, port: int, *, timeout: float = 10.0) -> None:
        self._conn = conn
        self._target = (host, port)
        self._timeout = timeout
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"forward-{host}:{port}", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, peer = self._listener.accept()
            except OSError:
                return  # the listener was closed
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                chan = self._conn.transport.open_channel(
                    "direct-tcpip", self._target, peer, timeout=self._timeout
                )
            except (paramiko.SSHException, OSError, EOFError):
                # The client sees a closed connection, as if the port were closed.
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, chan), daemon=True).start()

    def _pipe(self, sock: socket.socket, chan: paramiko.Channel) -> None:
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([sock, chan], [], [], 0.5)
                if sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        return
                    sock.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):
            return
        finally:
            chan.close()
            sock.close()

    def close(self) -> None:
        self._closed.set()
        # shutdown() wakes the accept() blocked in the other thread; close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=2)


# -- glue for fleetctl's global flags ------------------------------------------------------


def ssh_settings(client: ClientSettings) -> SSHSettings:
    """The SSH part of fleetctl's global flags."""
    return SSHSettings(
        username=client.ssh_username,
        timeout=client.ssh_timeout,
        known_hosts_file=Path(client.known_hosts_file).expanduser(),
        strict_host_key_checking=client.strict_host_key_checking,
        identity_files=tuple(Path(p).expanduser() for p in client.ssh_identity_files),
    )


def join_host_port(host: str, port: int) -> str:
    """An address :meth:`SSHConnection.open` takes; the default port stays implicit."""
    if port == DEFAULT_PORT:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = [
    "DEFAULT_PORT",
    "FD_FORWARD_COMMAND",
    "KnownHosts",
    "LocalForward",
    "SSHConnection",
    "SSHSettings",
    "fd_forward",
    "join_host_port",
    "known_hosts_id",
    "split_host_port",
    "ssh_settings",
    "tunnel_transport",
    "verify_host_key",
]
