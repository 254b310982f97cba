"""``fleetctl fd-forward SOCKET``: stdin/stdout spliced onto a unix socket.

This is the far end of ``--tunnel`` with a ``unix://`` endpoint: fleetctl on
the laptop runs ``fleetctl fd-forward /var/run/fleet.sock`` on the bastion over
an SSH exec session and speaks HTTP over that session's stdin/stdout (fleet's
``fdforward.go``). It runs once per tunnelled connection, so it imports only the
standard library: no click command object, no paramiko, no httpx.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

from fleet.errors import FleetError

_CHUNK = 65536


def fd_forward(path: str, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    """Proxy ``stdin_fd``/``stdout_fd`` to the unix socket at ``path`` until the
    socket side closes (a closed stdin only half-closes the socket, so the last
    response still comes back)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise FleetError(f"unable to connect to {path}: {exc.strerror or exc}") from exc

    def upstream() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(stdin_fd, _CHUNK):
                sock.sendall(data)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    # A daemon thread: when the server closes, we are done, whatever stdin does.
    threading.Thread(target=upstream, name="fd-forward-upstream", daemon=True).start()
    try:
        while data := sock.recv(_CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(stdout_fd, view) :]
    except (BrokenPipeError, ConnectionResetError):
        pass  # the SSH session went away: nothing left to deliver to
    finally:
        sock.close()
