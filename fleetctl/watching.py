"""``--watch`` for the list commands (feature B3): the listing again on every change.

The client's change feed (:meth:`fleetctl.client.FleetClient.watch_changes`:
fleetd's ``GET /fleet/v1/watch``, or etcd watches with ``--driver=etcd``) says
when a topic the listing shows changed; the listing is then read again and
shown, never polled. How it is shown depends on where it goes:

- a table on a terminal is redrawn in place (rich's live display);
- a table elsewhere is printed again, after an empty line, each time it changed;
- ``-o json`` prints one JSON object per line and per changed row:
  ``{"change": "added" | "modified" | "removed", ...the row as -o json shows it}``,
  the first listing as ``added`` rows followed by ``{"change": "synced"}``.

Ctrl-C (or a closed pipe) ends the watch with exit status 0.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fleetctl.client import FleetClient
    from fleetctl.context import App

# command -> (the feed topics its listing shows, the fields that name one row)
WATCHED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "list-units": (("units", "machines"), ("unit", "machine_id")),
    "list-unit-files": (("units", "machines"), ("unit",)),
    "list-machines": (("machines",), ("machine_id",)),
}


class Screen(Protocol):
    def show(self, text: str) -> None: ...


def row_changes(
    before: dict[tuple[Any, ...], dict[str, Any]], after: dict[tuple[Any, ...], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The JSON notices from one listing of rows to the next (keys sorted, so
    the output is stable): what appeared, what changed, what went away."""
    for key in sorted(after.keys() | before.keys(), key=repr):
        if key not in before:
            yield {"change": "added", **after[key]}
        elif key not in after:
            yield {"change": "removed", **before[key]}
        elif before[key] != after[key]:
            yield {"change": "modified", **after[key]}


class _Reprint:
    def __init__(self, app: App) -> None:
        self._app = app
        self._count = 0

    def show(self, text: str) -> None:
        self._app.write(("\n" if self._count else "") + text)
        self._count += 1


class _Live:
    def __init__(self, live: Any) -> None:
        self._live = live

    def show(self, text: str) -> None:
        from rich.text import Text

        self._live.update(Text(text.rstrip("\n")), refresh=True)


@contextlib.contextmanager
def _screen(app: App, live: bool) -> Iterator[Screen]:
    if not live:
        yield _Reprint(app)
        return
    from rich.console import Console  # a terminal's live display only
    from rich.live import Live

    console = Console(file=app.out, highlight=False, soft_wrap=True)
    with Live(console=console, auto_refresh=False, redirect_stdout=False) as display:
        yield _Live(display)


def watch_listing(
    app: App, view: Callable[[FleetClient], Awaitable[str]], command: str, output: str
) -> int:
    """Show ``view``'s listing and again on each change until interrupted."""
    topics, key_fields = WATCHED[command]
    live = output == "table" and app.out.isatty()

    async def body(client: FleetClient) -> int:
        rows: dict[tuple[Any, ...], dict[str, Any]] | None = None
        shown: str | None = None
        with _screen(app, live) as screen:
            async for _changed in client.watch_changes(topics):
                text = await view(client)
                if output != "json":
                    if text != shown:
                        screen.show(text)
                        shown = text
                    continue
                now = {tuple(row.get(f) for f in key_fields): row for row in json.loads(text)}
                lines = [json.dumps(n) for n in row_changes(rows or {}, now)]
                if rows is None:
                    lines.append(json.dumps({"change": "synced"}))
                rows = now
                if lines:
                    app.write("\n".join(lines) + "\n")
        return 0

    try:
        return app.run(body)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
