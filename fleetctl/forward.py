"""A local TCP port whose every connection is spliced to a stream the caller opens.

``fleetctl ui`` points a browser at the fleet API through it: to the local
unix socket, or through ``--tunnel`` to an SSH channel (``direct-tcpip`` to a
TCP endpoint, ``fleetctl fd-forward`` for a unix one). Anything with
``recv``/``sendall``/``close`` and a file descriptor (a socket, a paramiko
channel) can be the far end; one thread per connection, as browsers open few.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import Protocol


class Stream(Protocol):
    def fileno(self) -> int: ...
    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> None: ...
    def close(self) -> None: ...


class PortForward:
    """Listens on ``host:port`` (0: any free port) until :meth:`close`."""

    def __init__(self, dial: Callable[[], Stream], host: str = "127.0.0.1", port: int = 0) -> None:
        self._dial = dial
        self._closed = threading.Event()
        self._listener = socket.create_server((host, port))
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, name="ui-forward", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                far = self._dial()
            except Exception:  # any failure to dial: the browser sees a closed port
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, far), daemon=True).start()

    def _pipe(self, near: socket.socket, far: Stream) -> None:
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([near, far], [], [], 0.5)
                if near in ready:
                    data = near.recv(65536)
                    if not data:
                        return
                    far.sendall(data)
                if far in ready:
                    data = far.recv(65536)
                    if not data:
                        return
                    near.sendall(data)
        except Exception:  # either side went away: end this connection only
            return
        finally:
            far.close()
            near.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=2)
