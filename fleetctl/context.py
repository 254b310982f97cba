"""The one object click hands to every command: settings, output streams, clock.

Commands never touch globals: they get an :class:`App` from click's context,
write through :meth:`App.echo` / :meth:`App.warn` (stdout / stderr, as fleet
splits them) and run their async body with :meth:`App.run`, which opens the
chosen :class:`~fleetctl.client.FleetClient` and always closes it. With
``--tunnel`` the App owns the one SSH connection to the bastion: the driver's
transport and the remote commands (``ssh``, ``status``, ``journal``) share it,
and it is closed when the outermost :meth:`App.session` ends.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO, TypeVar

from fleetctl.client import ClientSettings, connect, resolve_driver

if TYPE_CHECKING:
    from fleet.ports import Clock
    from fleetctl.client import FleetClient
    from fleetctl.ssh import SSHConnection

T = TypeVar("T")


@dataclass
class App:
    settings: ClientSettings = field(default_factory=ClientSettings)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    # None: the system clock, blocking or asyncio's as the run is (see run()).
    clock_factory: Callable[[], Clock] | None = None
    _tunnel: SSHConnection | None = field(default=None, init=False, repr=False)
    _sessions: int = field(default=0, init=False, repr=False)
    _blocking: bool = field(default=False, init=False, repr=False)

    def clock(self) -> Clock:
        """The clock a command waits on."""
        if self.clock_factory is not None:
            return self.clock_factory()
        if self._blocking:
            from fleetctl.blocking import BlockingClock

            return BlockingClock()
        from fleet.ports.clock import SystemClock

        return SystemClock()

    def echo(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def warn(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Everything inside shares one ``--tunnel`` connection, closed at the end
        of the outermost session (nesting is fine)."""
        self._sessions += 1
        try:
            yield
        finally:
            self._sessions -= 1
            if self._sessions == 0 and self._tunnel is not None:
                tunnel, self._tunnel = self._tunnel, None
                tunnel.close()

    def tunnel(self) -> SSHConnection | None:
        """The SSH connection to the ``--tunnel`` host (opened on first use), or None."""
        if not self.settings.tunnel:
            return None
        if self._tunnel is None:
            from fleetctl import ssh  # paramiko: only SSH paths pay for it

            self._tunnel = ssh.SSHConnection.open(
                self.settings.tunnel, self.settings.ssh_settings()
            )
        return self._tunnel

    def run(self, body: Callable[[FleetClient], Awaitable[T]], *, loop: bool = False) -> T:
        """Connect, run ``body``, close. Over the API driver without ``--tunnel``
        nothing suspends: the coroutine runs without an event loop (asyncio's import
        alone is ~20 ms); otherwise, or when the body needs one (``loop``: tasks,
        signal handlers, Ctrl-C as a cancellation), one ``asyncio.run`` per command."""
        settings = resolve_driver(self.settings, self.warn)
        with self.session():
            # Opened before the event loop: the host-key prompt reads stdin.
            tunnel = self.tunnel()

            async def session() -> T:
                client = await connect(settings, tunnel)
                try:
                    return await body(client)
                finally:
                    await client.aclose()

            if settings.driver == "api" and tunnel is None and not loop:
                from fleetctl.blocking import run_blocking

                self._blocking = True
                try:
                    return run_blocking(session())
                finally:
                    self._blocking = False
            import asyncio

            return asyncio.run(session())
