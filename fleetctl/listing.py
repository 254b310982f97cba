"""The list commands' bodies (list-unit-files, list-units, list-machines), without click.

Each reads what it needs through the client and hands it to a pure renderer in
:mod:`fleetctl.render`: fleet's tab-separated table, or JSON with ``-o json``
(feature B2); with ``--watch`` :mod:`fleetctl.watching` reads them again on
every change (feature B3). :mod:`fleetctl.commands.lists` declares them to click;
:mod:`fleetctl.fastpath` runs them straight from a plain command line, so the
commands users run most never import click.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from fleet.core.model import UnitState
    from fleet.core.views import UnitInfo
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
    "list-machines": (
        "machine,ip,metadata",
        "machine, ip, metadata, cordon, status, leader, version, units",
        True,
    ),
}


def _named(name: str, names: Sequence[str]) -> bool:
    """Whether ``name`` is one of ``names`` (shell patterns allowed: ``web@*``)."""
    if not names:
        return True
    from fnmatch import fnmatchcase

    return any(name == wanted or fnmatchcase(name, wanted) for wanted in names)


def state_matches(state: UnitState, wanted: Sequence[str]) -> bool:
    """systemctl's ``--state``: any of the load, active or sub state is one wanted."""
    if not wanted:
        return True
    return bool({state.load_state, state.active_state, state.sub_state} & set(wanted))


def unit_file_matches(info: UnitInfo, wanted: Sequence[str]) -> bool:
    """``--state`` of list-unit-files: the desired or the current fleet state."""
    if not wanted:
        return True
    states = {str(info.desired), "" if info.current is None else str(info.current)}
    return bool(states & set(wanted))


def _show(app: App, view: View, command: str, output: str, watch: bool) -> int:
    if watch:
        from fleetctl.watching import watch_listing

        return watch_listing(app, view, command, output)

    async def body(client: FleetClient) -> int:
        app.write(await view(client))
        return 0

    return app.run(body)


def list_unit_files(
    app: App,
    fields: str,
    full: bool,
    no_legend: bool,
    output: str,
    *,
    names: Sequence[str] = (),
    states: Sequence[str] = (),
    watch: bool = False,
) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.UNIT_FILE_FIELDS)
    if "tmachine" in columns and output == "table":
        app.warn('WARNING: "tmachine" field is deprecated. Use "target" instead.')

    async def view(client: FleetClient) -> str:
        infos = [
            info
            for info in await client.list_units()
            if _named(info.name, names) and unit_file_matches(info, states)
        ]
        wanted = output == "json" or any(field in ("target", "tmachine") for field in columns)
        machines = {m.id: m for m in await client.list_machines()} if wanted else {}
        if output == "json":
            return render.unit_files_json(infos, machines)
        legend = render.Legend(machines, full)
        return render.render_unit_files(infos, columns, legend, header=not no_legend)

    return _show(app, view, "list-unit-files", output, watch)


def list_units(
    app: App,
    fields: str,
    full: bool,
    no_legend: bool,
    output: str,
    *,
    names: Sequence[str] = (),
    states: Sequence[str] = (),
    watch: bool = False,
) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.UNIT_FIELDS)

    async def view(client: FleetClient) -> str:
        exact = names[0] if len(names) == 1 and not any(c in names[0] for c in "*?[") else None
        found = [
            state
            for state in await client.list_unit_states(unit_name=exact)
            if _named(state.name, names) and state_matches(state, states)
        ]
        wanted = output == "json" or "machine" in columns
        machines = {m.id: m for m in await client.list_machines()} if wanted else {}
        if output == "json":
            return render.units_json(found, machines)
        legend = render.Legend(machines, full)
        return render.render_units(found, columns, legend, header=not no_legend)

    return _show(app, view, "list-units", output, watch)


def list_machines(
    app: App, fields: str, full: bool, no_legend: bool, output: str, *, watch: bool = False
) -> int:
    from fleetctl import render

    columns = render.parse_fields(fields, render.MACHINE_FIELDS)

    as_json = output == "json"

    async def view(client: FleetClient) -> str:
        machines = await client.list_machines()
        context = render.MachineContext()
        if as_json or "status" in columns or "leader" in columns:
            info = await client.cluster_info()
            lost = {m.machine.id: m.since for m in info.lost}
            context = render.MachineContext(info.leader[0] if info.leader else None, None, lost)
            if as_json or "status" in columns:  # lost machines show only with their status
                machines = machines + [m.machine for m in info.lost]
        if as_json or "units" in columns:
            counts: dict[str, int] = {}
            for state in await client.list_unit_states():
                counts[state.machine_id] = counts.get(state.machine_id, 0) + 1
            context = render.MachineContext(context.leader, counts, context.lost)
        if as_json:
            return render.machines_json(machines, context)
        legend = render.Legend({}, full)
        return render.render_machines(
            machines, columns, legend, header=not no_legend, context=context
        )

    return _show(app, view, "list-machines", output, watch)


# The two that take UNIT arguments and --state (only through click: the fast path
# hands plain command lines to BODIES).
FILTERED_BODIES = {
    "list-unit-files": list_unit_files,
    "list-units": list_units,
}

BODIES: dict[str, Callable[..., int]] = {
    "list-unit-files": list_unit_files,
    "list-units": list_units,
    "list-machines": list_machines,
}
