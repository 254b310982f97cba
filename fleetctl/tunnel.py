"""SSH connections for fleetctl (paramiko): connecting, authenticating, running commands.

Commands never talk SSH themselves: the context asks this module for an
:class:`SSHConnection` to a machine (``ssh``, ``status``, ``journal``) or to the
``--tunnel`` bastion, whose channels carry the API driver's requests
(:mod:`fleetctl.tunnel_http`) or the etcd driver's :class:`LocalForward`.
Measured rules (see the README's dependency notes): ``TCP_NODELAY`` on every
transport socket (without it each request stalls about 40 ms), host keys
checked by :mod:`fleetctl.hostkeys`, and one long-lived channel per invocation.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import paramiko

from fleet.errors import FleetError, SSHError
from fleetctl.fdforward import fd_forward
from fleetctl.hostkeys import verify_host_key

if TYPE_CHECKING:
    from fleetctl.client import ClientSettings

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
    "LocalForward",
    "SSHConnection",
    "SSHSettings",
    "fd_forward",
    "join_host_port",
    "known_hosts_id",
    "split_host_port",
    "ssh_settings",
]
