"""The list commands: list-unit-files, list-units, list-machines.

Each reads what it needs through the client and hands it to a pure renderer
in :mod:`fleetctl.render`: fleet's tab-separated table, or JSON with
``-o json`` (feature B2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from fleetctl.context import App

if TYPE_CHECKING:
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)


def list_options(default_fields: str, valid: str, short_full: bool) -> Callable[[Any], Any]:
    def decorate(func: Any) -> Any:
        full_flags = ("--full", "-l") if short_full else ("--full",)
        func = click.option(
            "-o",
            "--output",
            type=click.Choice(["table", "json"], case_sensitive=False),
            default="table",
            show_default=True,
            help="Output format: fleet's table, or a JSON array of objects (all fields).",
        )(func)
        func = click.option(
            "--no-legend", is_flag=True, help="Do not print a legend (column headers)."
        )(func)
        func = click.option(
            *full_flags, "full", is_flag=True, help="Do not ellipsize fields on output."
        )(func)
        return click.option(
            "--fields",
            default=default_fields,
            show_default=True,
            help=f"Columns to print, comma-separated. Valid fields: {valid}.",
        )(func)

    return decorate


@click.command("list-unit-files", help="List the units that exist in the cluster.")
@list_options(
    "unit,hash,dstate,state,target",
    "unit, hash, dstate, state, target, global, desc, reason "
    "(tmachine: deprecated alias of target)",
    short_full=False,
)
@pass_app
def list_unit_files(app: App, fields: str, full: bool, no_legend: bool, output: str) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.UNIT_FILE_FIELDS)
    if "tmachine" in columns and output == "table":
        app.warn('WARNING: "tmachine" field is deprecated. Use "target" instead.')

    async def body(client: FleetClient) -> int:
        infos = await client.list_units()
        wanted = output == "json" or any(field in ("target", "tmachine") for field in columns)
        machines = {m.id: m for m in await client.list_machines()} if wanted else {}
        if output == "json":
            app.write(render.unit_files_json(infos, machines))
        else:
            legend = render.Legend(machines, full)
            app.write(render.render_unit_files(infos, columns, legend, header=not no_legend))
        return 0

    return app.run(body)


@click.command("list-units", help="List the current state of units in the cluster.")
@list_options("unit,machine,active,sub", "unit, machine, load, active, sub, hash", short_full=True)
@pass_app
def list_units(app: App, fields: str, full: bool, no_legend: bool, output: str) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.UNIT_FIELDS)

    async def body(client: FleetClient) -> int:
        states = await client.list_unit_states()
        wanted = output == "json" or "machine" in columns
        machines = {m.id: m for m in await client.list_machines()} if wanted else {}
        if output == "json":
            app.write(render.units_json(states, machines))
        else:
            legend = render.Legend(machines, full)
            app.write(render.render_units(states, columns, legend, header=not no_legend))
        return 0

    return app.run(body)


@click.command("list-machines", help="Enumerate the current hosts in the cluster.")
@list_options("machine,ip,metadata", "machine, ip, metadata, cordon", short_full=True)
@pass_app
def list_machines(app: App, fields: str, full: bool, no_legend: bool, output: str) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.MACHINE_FIELDS)

    async def body(client: FleetClient) -> int:
        machines = await client.list_machines()
        if output == "json":
            app.write(render.machines_json(machines))
        else:
            legend = render.Legend({}, full)
            app.write(render.render_machines(machines, columns, legend, header=not no_legend))
        return 0

    return app.run(body)


COMMANDS = (list_unit_files, list_units, list_machines)
