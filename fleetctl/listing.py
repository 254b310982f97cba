"""The list commands' bodies (list-unit-files, list-units, list-machines), without click.

Each reads what it needs through the client and hands it to a pure renderer in
:mod:`fleetctl.render`: fleet's tab-separated table, or JSON with ``-o json``
(feature B2). :mod:`fleetctl.commands.lists` declares them to click;
:mod:`fleetctl.fastpath` runs them straight from a plain command line, so the
commands users run most never import click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetctl.client import FleetClient
    from fleetctl.context import App

# name -> (default --fields, the valid ones as --help says them, whether -l means --full)
LISTS: dict[str, tuple[str, str, bool]] = {
    "list-unit-files": (
        "unit,hash,dstate,state,target",
        "unit, hash, dstate, state, target, global, desc, reason "
        "(tmachine: deprecated alias of target)",
        False,
    ),
    "list-units": ("unit,machine,active,sub", "unit, machine, load, active, sub, hash", True),
    "list-machines": ("machine,ip,metadata", "machine, ip, metadata, cordon", True),
}


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


BODIES = {
    "list-unit-files": list_unit_files,
    "list-units": list_units,
    "list-machines": list_machines,
}
