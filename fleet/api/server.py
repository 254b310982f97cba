"""Serving the API: listener sockets and uvicorn servers inside fleetd's event loop.

Listeners are created apart from the servers (:func:`open_listeners`) so that
fleetd can stop and restart its components on SIGHUP while keeping the very
same sockets, as fleet did: :func:`serve_listeners` hands uvicorn a duplicate
of each socket, and uvicorn closes only the duplicate on shutdown. Sockets
come from systemd socket activation (the ``sd_listen_fds`` protocol:
``LISTEN_PID``/``LISTEN_FDS``, fds from 3), else a unix socket (mode 0660 by
default), plus optional TCP listeners, with TLS and client-certificate
authentication (feature B11). uvicorn's own signal handling is disabled: the
daemon owns SIGTERM/SIGHUP, and cancelling :func:`serve_listeners` is the one
way to stop serving (gracefully: in-flight requests get a few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import stat
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from fleet.errors import FleetError, InvalidConfig

DEFAULT_UNIX_PATH = "/var/run/fleet.sock"
SD_LISTEN_FDS_START = 3


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Server certificate and key; with ``client_ca`` every client must present a
    certificate signed by that CA (``ssl.CERT_REQUIRED``)."""

    certfile: str
    keyfile: str
    client_ca: str | None = None


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket and how to serve it. The caller owns and closes ``sock``
    (:func:`close_listeners`); ``unix_file`` is the (path, inode) of a socket file
    this process bound, removed on close unless someone replaced it since."""

    sock: socket.socket
    tls: TlsConfig | None = None
    unix_file: tuple[str, int] | None = None

    @property
    def description(self) -> str:
        name = self.sock.getsockname()
        where = name if isinstance(name, str) else f"{name[0]}:{name[1]}"
        scheme = "https" if self.tls else ("unix" if self.sock.family == socket.AF_UNIX else "http")
        return f"{scheme}://{where}"


def systemd_listen_fds(
    environ: MutableMapping[str, str] | None = None, *, unset_environment: bool = True
) -> list[socket.socket]:
    """Sockets systemd passed to this process, [] when none were.

    The variables are honoured only when ``LISTEN_PID`` is our pid (they may be
    inherited by a child that must not steal them), and removed afterwards so
    that our own children never see them.
    """
    env = os.environ if environ is None else environ
    try:
        pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if pid != os.getpid() or count <= 0:
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def bind_unix(path: str, mode: int = 0o660, backlog: int = 128) -> socket.socket:
    """A listening unix socket at ``path`` whose mode is ``mode`` from its first moment.

    Bound under a temporary name, chmod-ed, then renamed into place, so there is
    no window in which the socket is reachable with the umask's permissions.
    A stale socket left by a previous fleetd is replaced; any other file is not.
    """
    target = Path(path)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(target.lstat().st_mode):
            raise InvalidConfig(f"{path} exists and is not a socket: refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staging))
        os.chmod(staging, mode)
        os.replace(staging, target)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise FleetError(f"cannot listen on unix socket {path}: {exc}") from exc
    return sock


def bind_tcp(host: str, port: int, backlog: int = 128) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise FleetError(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


def open_listeners(
    *,
    unix_path: str | None = DEFAULT_UNIX_PATH,
    unix_mode: int = 0o660,
    listen_fds: Sequence[socket.socket] | None = None,
    tcp: Sequence[tuple[str, int]] = (),
    tls: TlsConfig | tuple[str, str, str | None] | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> list[Listener]:
    """Create every listener fleetd serves the API on.

    Sockets passed by systemd (``listen_fds``, read from the environment when
    None) replace the unix socket: fleet.socket already provides it. ``tls``
    applies to the ``tcp`` listeners; a plain-text TCP API is allowed (fleet
    had one) but a TLS config makes it authenticated and private.
    """
    if isinstance(tls, tuple):
        tls = TlsConfig(*tls)
    passed = systemd_listen_fds(environ) if listen_fds is None else list(listen_fds)
    listeners = [Listener(s) for s in passed]
    try:
        if not passed and unix_path:
            sock = bind_unix(unix_path, unix_mode)
            listeners.append(Listener(sock, unix_file=(unix_path, os.stat(unix_path).st_ino)))
        for host, port in tcp:
            listeners.append(Listener(bind_tcp(host, port), tls))
    except BaseException:
        close_listeners(listeners)
        raise
    return listeners


def close_listeners(listeners: Sequence[Listener]) -> None:
    """Close the sockets and remove unix socket files this process created."""
    for listener in listeners:
        # A socket passed by systemd has no unix_file: systemd owns its path.
        if listener.unix_file is not None:
            path, inode = listener.unix_file
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
        listener.sock.close()


def _config(app: ASGIApp, tls: TlsConfig | None, graceful: float) -> uvicorn.Config:
    kwargs: dict[str, object] = {}
    if tls is not None:
        kwargs = {"ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile}
        if tls.client_ca:
            kwargs |= {"ssl_ca_certs": tls.client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return uvicorn.Config(
        app,
        lifespan="off",  # one app serves several listeners; it has no startup work
        log_config=None,  # fleetd configures logging, uvicorn must not
        access_log=False,
        server_header=False,  # the app sends Server: fleetd/<version>
        date_header=True,
        timeout_graceful_shutdown=max(1, round(graceful)),
        **kwargs,  # type: ignore[arg-type]
    )


class _Server(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM capture: fleetd owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_one(
    app: ASGIApp, listener: Listener, graceful: float, on_stop: Callable[[], None] | None
) -> None:
    server = _Server(_config(app, listener.tls, graceful))
    # uvicorn closes the sockets it is given; a duplicate keeps ours listening
    # for the next serve after a reconfigure.
    sock = listener.sock.dup()
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if on_stop is not None:
            on_stop()  # before uvicorn waits for in-flight answers to end
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        raise
    finally:
        sock.close()
    # uvicorn returns on its own only when it could not start or was told to exit.
    raise FleetError(f"API server on {listener.description} stopped unexpectedly")


async def serve_listeners(
    app: ASGIApp,
    listeners: Sequence[Listener],
    *,
    graceful_shutdown: float = 5.0,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on every listener until cancelled; the sockets stay open.
    ``on_stop`` runs when serving is cancelled, before in-flight requests are
    waited for: it ends the never-ending ones (the change feed's streams)."""
    if not listeners:
        raise InvalidConfig("no API listeners: no unix socket, systemd socket or TCP address")
    async with asyncio.TaskGroup() as group:
        for listener in listeners:
            group.create_task(_serve_one(app, listener, graceful_shutdown, on_stop))


async def serve(
    app: ASGIApp,
    *,
    unix_path: str | None = DEFAULT_UNIX_PATH,
    unix_mode: int = 0o660,
    listen_fds: Sequence[socket.socket] | None = None,
    tcp: Sequence[tuple[str, int]] = (),
    tls: TlsConfig | tuple[str, str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Open the listeners, serve until cancelled, then close them."""
    listeners = open_listeners(
        unix_path=unix_path,
        unix_mode=unix_mode,
        listen_fds=listen_fds,
        tcp=tcp,
        tls=tls,
        environ=dict(environ) if environ is not None else None,
    )
    try:
        await serve_listeners(app, listeners)
    finally:
        close_listeners(listeners)
