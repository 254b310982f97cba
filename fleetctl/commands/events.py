"""``fleetctl events``: the cluster's event history (feature B13), and following it.

``fleetctl events [UNIT...] [--machine M] [--since D] [--limit N] [-f|--watch]
[-o json]`` prints a table (TIME, UNIT, MACHINE, EVENT, MESSAGE) oldest first,
or with ``-o json`` one JSON array (with ``-f``: one JSON object per line).
A unit's history includes the events of the machines it was on (a machine
lost). ``-f`` keeps printing new events until Ctrl-C, which ends it with exit 0.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from fleet.errors import InvalidInput
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.events import Event, EventQuery
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)

HEADER = ["TIME", "UNIT", "MACHINE", "EVENT", "MESSAGE"]


def _time_cell(seconds: float, full: bool) -> str:
    from fleet.events import rfc3339

    text = rfc3339(seconds)
    return text if full else text[:19] + "Z"


def _message(event: Event) -> str:
    text = event.message
    if event.reason and event.reason not in text:
        text = f"{text}: {event.reason}" if text else event.reason
    if event.result and event.result not in text:
        text = f"{text} [{event.result}]"
    return text


def row(event: Event, full: bool) -> list[str]:
    """One table row of an event."""
    machine = event.machine or "-"
    if not full and event.machine and len(machine) > 8:
        machine = machine[:8] + "..."
    return [
        _time_cell(event.time, full),
        event.unit or "-",
        machine,
        event.kind.value,
        _message(event) or "-",
    ]


async def _resolve_machine(client: FleetClient, text: str) -> str:
    """A live machine's unique id prefix -> its id; anything else is taken as an
    exact id (a machine that left can still be asked about)."""
    matches = [m.id for m in await client.list_machines() if m.id.startswith(text)]
    if len(matches) > 1:
        raise InvalidInput(f"machine {text!r} is ambiguous: {len(matches)} machines match")
    return matches[0] if matches else text


def _query(
    units: tuple[str, ...], machine: str | None, since: str | None, limit: int | None
) -> EventQuery:
    from fleet.core.events import EventQuery
    from fleet.core.names import validate_unit_name
    from fleet.events import parse_since

    for name in units:
        validate_unit_name(name)
    if machine is not None and (not machine or "/" in machine):
        raise InvalidInput(f"invalid machine {machine!r}")
    when = parse_since(since, time.time()) if since is not None else None
    return EventQuery(units, machine, when, limit)


@click.command(
    "events",
    help="Show what happened to units and machines: placements and why, moves, "
    "agent actions and systemd results, failures, machines joining, leaving, cordoned. "
    "Oldest first; -f keeps following (Ctrl-C ends it).",
)
@click.argument("units", nargs=-1)
@click.option("--machine", help="Only events on this machine (a unique id prefix or an id).")
@click.option("--since", help="Only events since: a duration back (10m, 1h) or an RFC 3339 time.")
@click.option("--limit", type=click.IntRange(1, 100_000), help="Only the newest N events.")
@click.option("-f", "--follow", "--watch", "follow", is_flag=True, help="Keep printing new events.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"], case_sensitive=False),
    default="table",
    show_default=True,
    help="A table, or JSON (an array; with -f one object per line).",
)
@click.option("--no-legend", is_flag=True, help="Do not print a legend (column headers).")
@click.option("--full", is_flag=True, help="Do not ellipsize fields on output.")
@pass_app
def events(
    app: App,
    *,
    units: tuple[str, ...],
    machine: str | None,
    since: str | None,
    limit: int | None,
    follow: bool,
    output: str,
    no_legend: bool,
    full: bool,
) -> int:
    query = _query(units, machine, since, limit)  # bad input fails before connecting
    as_json = output.lower() == "json"

    async def body(client: FleetClient) -> int:
        import asyncio  # only a follow runs in an event loop; nothing else pays for it
        from dataclasses import replace

        from fleet.events import wire

        q = query
        if q.machine is not None:
            q = replace(q, machine=await _resolve_machine(client, q.machine))
        if not follow:
            found = await client.list_events(q)
            if as_json:
                app.write(json.dumps([wire(e) for e in found], indent=2) + "\n")
                return 0
            _table(app, found, full, no_legend)
            return 0
        if not as_json and not no_legend:
            app.write("\t".join(HEADER) + "\n")
        stream = client.follow_events(q)
        try:
            async for event in stream:
                if as_json:
                    app.write(json.dumps(wire(event), separators=(",", ":")) + "\n")
                else:
                    app.write("\t".join(row(event, full)) + "\n")
        except asyncio.CancelledError:
            return 0  # Ctrl-C: the end of a follow, not an error
        finally:
            await stream.aclose()
        return 0

    return app.run(body, loop=follow)  # a follow needs Ctrl-C as a cancellation


def _table(app: App, found: list[Event], full: bool, no_legend: bool) -> None:
    from fleetctl.tabwriter import tabulate

    rows = [] if no_legend else [HEADER]
    rows += [row(e, full) for e in found]
    if rows:
        app.write(tabulate(rows))


COMMANDS = (events,)
