"""Live progress of blocking multi-unit commands on a terminal (B12).

When stdout is a terminal and a command waits for two or more units, the
:class:`~fleetctl.waiting.Waiter` shows one live row per unit (its state, its
machine, the time waited) instead of printing fleet's one line per unit; off
a terminal (pipes, files, scripts) fleet's exact lines are printed and rich is
never imported. ``NO_COLOR`` (any value) turns colour off, ``TERM=dumb`` the
live view. The rows stay on screen when the wait ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

# A unit's row: what it is waiting for has happened, it failed, or it still waits.
DONE, FAILED, WAITING = "done", "failed", "waiting"


def wants_live(stream: IO[str], units: int, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a wait for ``units`` units on ``stream`` gets the live view."""
    if units < 2 or environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class _Row:
    state: str = "-"
    machine: str = "-"
    outcome: str = WAITING
    started: float = 0.0
    ended: float | None = None


class LiveRows:
    """One row per unit, redrawn on every :meth:`update` (no background thread: the
    view changes only when the waiter polls)."""

    def __init__(self, stream: IO[str], names: Sequence[str], title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self._title = title
        now = time.monotonic()
        self._rows = {name: _Row(started=now) for name in names}
        self._console = Console(file=stream, no_color="NO_COLOR" in os.environ or None)
        self._live = Live(self._table(), console=self._console, auto_refresh=False, transient=False)
        self._live.start(refresh=True)

    def update(self, name: str, state: str, machine: str = "", outcome: str = WAITING) -> None:
        row = self._rows.get(name)
        if row is None or row.outcome != WAITING:
            return
        row.state, row.machine, row.outcome = state or "-", machine or "-", outcome
        if outcome != WAITING:
            row.ended = time.monotonic()

    def refresh(self) -> None:
        self._live.update(self._table(), refresh=True)

    def close(self) -> None:
        self.refresh()
        self._live.stop()

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self._title, title_justify="left", box=None, pad_edge=False)
        for column in ("UNIT", "STATE", "MACHINE", "ELAPSED"):
            table.add_column(column, no_wrap=True)
        now = time.monotonic()
        styles = {DONE: "green", FAILED: "bold red", WAITING: "yellow"}
        for name, row in self._rows.items():
            elapsed = (row.ended if row.ended is not None else now) - row.started
            mark = {DONE: "✓ ", FAILED: "✗ ", WAITING: "… "}[row.outcome]
            table.add_row(
                Text(name),
                Text(mark + row.state, style=styles[row.outcome]),
                Text(row.machine),
                f"{elapsed:.1f}s",
            )
        return table
