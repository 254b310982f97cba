"""Machine maintenance: ``cordon``, ``uncordon`` and ``drain`` (with ``--status``).

A cordon keeps new units off a machine; a drain cordons it and has the engine
move its units elsewhere a few at a time (each active on its new machine before
the next moves). The engine drives the drain: ``drain`` only asks for it and
follows its progress, printing a line per unit as it moves; Ctrl-C pauses the
drain (units already moving finish) and ``drain`` again resumes it. Exit codes:
0 drained, 2 some units could not move (pinned by ``MachineID`` or with nowhere
to go; they keep running), 1 a moved unit failed or the drain timed out.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from fleet.errors import InvalidInput
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.maintenance import DrainStatus, UnitMove
    from fleet.maintenance import Maintenance
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)

POLL = 0.25  # seconds between looks at a drain's progress
INTERRUPTED = 130


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A Go duration (``30s``, ``1m30s``, ``500ms``) or a plain number of seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        from fleet.config import parse_go_duration

        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = parse_go_duration(text)
            except ValueError as exc:
                self.fail(f"{text!r}: {exc}", param, ctx)
        if not seconds >= 0:  # negative, or nan
            self.fail(f"{text!r}: must not be negative", param, ctx)
        return seconds


DURATION = Duration()


def _is_full_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


async def _machine_id(client: FleetClient, prefix: str) -> str:
    from fleetctl.targets import LookupFailed, machine_by_prefix

    try:
        return (await machine_by_prefix(client, prefix)).id
    except LookupFailed as exc:
        raise InvalidInput(f"machine {prefix}: {exc}") from exc


@click.command("cordon", help="Place nothing new on these machines; what runs there stays.")
@click.argument("machines", nargs=-1, required=True)
@click.option("--reason", default="", help="Why (shown by list-machines and placement reasons).")
@pass_app
def cordon(app: App, machines: tuple[str, ...], reason: str) -> int:
    async def body(client: FleetClient) -> None:
        ids = [await _machine_id(client, m) for m in machines]  # all resolved before any write
        for machine_id in ids:
            await client.cordon(machine_id, reason)
            app.echo(f"Cordoned machine {machine_id}")

    app.run(body)
    return 0


@click.command("uncordon", help="Let new units land on these machines again; ends any drain.")
@click.argument("machines", nargs=-1, required=True)
@pass_app
def uncordon(app: App, machines: tuple[str, ...]) -> int:
    async def body(client: FleetClient) -> int:
        ids = []
        for prefix in machines:
            # A machine that has left the cluster can still be uncordoned by its full id.
            known = [m.id for m in await client.list_machines() if m.id.startswith(prefix)]
            if len(known) == 1:
                ids.append(known[0])
            elif not known and _is_full_id(prefix):
                ids.append(prefix)
            else:
                ids.append(await _machine_id(client, prefix))
        code = 0
        for machine_id in ids:
            if await client.uncordon(machine_id):
                app.echo(f"Uncordoned machine {machine_id}")
            else:
                app.warn(f"Machine {machine_id} was not cordoned")
                code = 1
        return code

    return app.run(body)


@click.command(
    "drain",
    help="Cordon a machine and move its units elsewhere, a few at a time, each active on its "
    "new machine before the next moves. Exit 0 when drained, 2 when some units could not move, "
    "1 on failure or timeout. Ctrl-C pauses; drain again resumes.",
)
@click.argument("machine", required=False)
@click.option(
    "--max-parallel",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Units moving at once.",
)
@click.option(
    "--min-healthy-time",
    type=DURATION,
    default="5s",
    show_default=True,
    help="How long a moved unit must stay active before the next moves.",
)
@click.option(
    "--timeout",
    "give_up_after",
    type=DURATION,
    default=None,
    help="Stop starting moves after this long (default: no limit).",
)
@click.option("--include-global", is_flag=True, help="Also stop global units there.")
@click.option("--reason", default="", help="The cordon's reason (default: drain).")
@click.option("--no-block", is_flag=True, help="Ask for the drain and return at once.")
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Show the progress of the machine's drain (or of every drain) and exit.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    help="With --status: fleet's table or JSON.",
)
@pass_app
def drain(
    app: App,
    *,
    machine: str | None,
    max_parallel: int,
    min_healthy_time: float,
    give_up_after: float | None,
    include_global: bool,
    reason: str,
    no_block: bool,
    show_status: bool,
    output: str,
) -> int:
    from fleet.maintenance import DrainOptions

    if show_status:
        return app.run(lambda client: _show_status(app, client, machine, output))
    if machine is None:
        raise click.UsageError("drain needs a MACHINE (or --status)")
    if give_up_after == 0:
        raise InvalidInput("--timeout must be positive")
    options = DrainOptions(max_parallel, min_healthy_time, give_up_after, include_global, reason)

    async def body(client: FleetClient) -> int:
        machine_id = await _machine_id(client, machine)
        await client.drain(machine_id, options)
        app.echo(f"Draining machine {machine_id} (max-parallel {max_parallel})")
        if no_block:
            return 0
        try:
            return await _follow(app, client, machine_id)
        except asyncio.CancelledError:
            # Ctrl-C: leave the drain consistent (moves under way finish) and resumable.
            await client.set_drain_paused(machine_id, True)
            app.warn(
                f"Drain of {machine_id} paused; run 'fleetctl drain {machine_id[:8]}' to resume "
                f"or 'fleetctl uncordon {machine_id[:8]}' to end it"
            )
            return INTERRUPTED

    return app.run(body, loop=True)  # Ctrl-C must reach it as a cancellation


async def _follow(app: App, client: FleetClient, machine_id: str) -> int:
    """Print each unit's progress as it changes, until the drain is finished."""
    clock = app.clock()
    shown: dict[str, UnitMove] = {}
    while True:
        m = await client.maintenance(machine_id)
        if m.request is None:
            app.warn(f"The drain of {machine_id} was ended (uncordoned)")
            return 1
        status = m.current_status
        if status is not None:
            for name, move in status.units.items():
                if shown.get(name) != move:
                    shown[name] = move
                    app.echo(_move_line(name, move))
            if status.phase.final:
                app.echo(f"Drain of {machine_id}: {status.phase} ({status.detail})")
                return status.phase.exit_code
        await clock.sleep(POLL)


def _move_line(name: str, move: UnitMove) -> str:
    where = f" to {move.to[:8]}" if move.to else ""
    detail = f": {move.detail}" if move.detail else ""
    return f"Unit {name} {move.state}{where}{detail}"


async def _show_status(app: App, client: FleetClient, machine: str | None, output: str) -> int:
    if machine is not None:
        reports = [await client.maintenance(await _machine_id(client, machine))]
    else:
        cordoned = [m.id for m in await client.list_machines() if m.cordon is not None]
        reports = [await client.maintenance(mid) for mid in cordoned]
    if output == "json":
        app.write(json.dumps([_report_json(r) for r in reports], indent=2) + "\n")
        return 0
    if not reports:
        app.echo("No machine is cordoned")
    for report in reports:
        app.write(_report_text(report))
    return 0


def _report_text(m: Maintenance) -> str:
    from fleetctl.tabwriter import tabulate

    lines = []
    if m.cordon is None:
        lines.append(f"Machine {m.machine_id}: not cordoned")
    else:
        why = f" ({m.cordon.reason})" if m.cordon.reason else ""
        lines.append(f"Machine {m.machine_id}: cordoned{why}")
    status = m.current_status
    if m.request is not None:
        r = m.request
        phase = "waiting for the engine" if status is None else f"{status.phase} ({status.detail})"
        paused = ", paused" if r.paused else ""
        lines.append(
            f"Drain: {phase} [max-parallel {r.max_parallel}, "
            f"min-healthy-time {r.min_healthy:g}s{paused}]"
        )
    text = "\n".join(lines) + "\n"
    if status is not None and status.units:
        rows: list[list[str]] = [["UNIT", "STATE", "MACHINE", "DETAIL"]]
        rows += [
            [name, move.state, move.to[:8] or "-", move.detail or "-"]
            for name, move in status.units.items()
        ]
        text += tabulate(rows)
    return text


def _report_json(m: Maintenance) -> dict[str, Any]:
    status: DrainStatus | None = m.current_status
    out: dict[str, Any] = {
        "machine_id": m.machine_id,
        "cordoned": m.cordon is not None,
        "cordon_reason": m.cordon.reason if m.cordon is not None else None,
        "drain": None,
    }
    if m.request is not None:
        out["drain"] = {
            "phase": status.phase.value if status is not None else None,
            "detail": status.detail if status is not None else None,
            "paused": m.request.paused,
            "max_parallel": m.request.max_parallel,
            "min_healthy_time": m.request.min_healthy,
            "units": {
                name: {
                    "state": move.state.value,
                    "machine_id": move.to or None,
                    "detail": move.detail or None,
                }
                for name, move in (status.units.items() if status is not None else ())
            },
        }
    return out


COMMANDS = (cordon, uncordon, drain)
