"""Local TCP port forwarding over SSH (:class:`LocalForward`): how the etcd
driver goes through ``--tunnel``, since gRPC takes no custom transport."""

from __future__ import annotations

import contextlib
import select
import socket
import threading

import paramiko

from fleetctl.ssh.connection import SSHConnection


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
