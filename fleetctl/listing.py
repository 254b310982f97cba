"""The list commands' bodies (list-unit-files, list-units, list-machines), without click.

Each reads what it needs through the client and hands it to a pure renderer in
:mod:`fleetctl.render`: fleet's tab-separated table, or JSON with ``-o json``
(feature B2); with ``--watch`` :mod:`fleetctl.watching` reads them again on
every change (feature B3). :mod:`fleetctl.commands.lists` declares them to click;
:mod:`fleetctl.fastpath` runs them straight from a plain command line, so the
commands users run most never import click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fleetctl.client import FleetClient
    from fleetctl.context import App

    View = Callable[[FleetClient], Awaitable[str]]

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


def _show(app: App, view: View, command: str, output: str, watch: bool) -> int:
    if watch:
        from fleetctl.watching import watch_listing

        return watch_listing(app, view, command, output)

    async def body(client: FleetClient) -> int:
        app.write(await view(client))
        return 0

    return app.run(body)


def list_unit_files(
    app: App, fields: str, full: bool, no_legend: bool, output: str, *, watch: bool = False
) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.UNIT_FILE_FIELDS)
    if "tmachine" in columns and output == "table":
        app.warn('WARNING: "tmachine" field is deprecated. Use "target" instead.')

    async def view(client: FleetClient) -> str:
        infos = await client.list_units()
        wanted = output == "json" or any(field in ("target", "tmachine") for field in columns)
        machines = {m.id: m for m in await client.list_machines()} if wanted else {}
        if output == "json":
            return render.unit_files_json(infos, machines)
        legend = render.Legend(machines, full)
        return render.render_unit_files(infos, columns, legend, header=not no_legend)

    return _show(app, view, "list-unit-files", output, watch)


def list_units(
    app: App, fields: str, full: bool, no_legend: bool, output: str, *, watch: bool = False
) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.UNIT_FIELDS)

    async def view(client: FleetClient) -> str:
        states = await client.list_unit_states()
        wanted = output == "json" or "machine" in columns
        machines = {m.id: m for m in await client.list_machines()} if wanted else {}
        if output == "json":
            return render.units_json(states, machines)
        legend = render.Legend(machines, full)
        return render.render_units(states, columns, legend, header=not no_legend)

    return _show(app, view, "list-units", output, watch)


def list_machines(
    app: App, fields: str, full: bool, no_legend: bool, output: str, *, watch: bool = False
) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.MACHINE_FIELDS)

    async def view(client: FleetClient) -> str:
        machines = await client.list_machines()
        if output == "json":
            return render.machines_json(machines)
        legend = render.Legend({}, full)
        return render.render_machines(machines, columns, legend, header=not no_legend)

    return _show(app, view, "list-machines", output, watch)


BODIES = {
    "list-unit-files": list_unit_files,
    "list-units": list_units,
    "list-machines": list_machines,
}
