"""The one object click hands to every command: settings, output streams, clock.

Commands never touch globals: they get an :class:`App` from click's context,
write through :meth:`App.echo` / :meth:`App.warn` (stdout / stderr, as fleet
splits them) and run their async body with :meth:`App.run`, which opens the
chosen :class:`~fleetctl.client.FleetClient` and always closes it.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from fleetctl.client import ClientSettings, connect, resolve_driver

if TYPE_CHECKING:
    from fleet.ports import Clock
    from fleetctl.client import FleetClient


def _system_clock() -> Clock:
    from fleetctl.waiting import SystemClock  # keeps `fleetctl version` lean

    return SystemClock()


@dataclass
class App:
    settings: ClientSettings = field(default_factory=ClientSettings)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    clock_factory: Callable[[], Clock] = _system_clock

    def echo(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def warn(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def run(self, body: Callable[[FleetClient], Awaitable[int]]) -> int:
        """Connect, run ``body``, close: one ``asyncio.run`` per command."""
        import asyncio  # 20 ms at start-up that `fleetctl version` does not need

        settings = resolve_driver(self.settings, self.warn)

        async def session() -> int:
            client = await connect(settings)
            try:
                return await body(client)
            finally:
                await client.aclose()

        return asyncio.run(session())
