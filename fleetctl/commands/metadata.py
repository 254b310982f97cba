"""``set-metadata`` and ``unset-metadata``: a machine's dynamic metadata from the CLI.

MACHINE is a full machine id or a unique prefix of a live machine's (as for
``fleetctl ssh``). Every argument is checked (:mod:`fleet.machines`' rules)
and the machine found before anything is written, so bad input writes
nothing; the changes go out in one client call (one ``PATCH /machines``
over the API). The engine and the global-unit agents react to the new
metadata as the placement rules say: units whose ``MachineMetadata=`` no
longer fits move, units that now fit may be placed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.errors import FleetError
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.model import Machine
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)


async def _machine(client: FleetClient, prefix: str) -> Machine:
    from fleetctl.targets import AmbiguousMachine, LookupFailed, machine_by_prefix

    try:
        return await machine_by_prefix(client, prefix)
    except AmbiguousMachine as exc:
        raise FleetError(f"Unable to proceed: {exc}") from exc
    except LookupFailed as exc:
        raise FleetError(f"Unable to proceed: machine {prefix!r} does not exist") from exc


def _update(app: App, prefix: str, changes: dict[str, str | None], verb: str) -> int:
    async def body(client: FleetClient) -> int:
        machine = await _machine(client, prefix)
        await client.update_machine_metadata(machine.id, changes)
        what = ", ".join(k if v is None else f"{k}={v}" for k, v in changes.items())
        app.echo(f"{verb} metadata of machine {machine.id}: {what}")
        return 0

    return app.run(body)


@click.command(
    "set-metadata",
    help="Set dynamic metadata on a machine: KEY=VALUE pairs, kept across fleetd restarts. "
    "MACHINE is a machine id or a unique prefix of one. Units are rescheduled as their "
    "MachineMetadata= rules say.",
)
@click.argument("machine")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@pass_app
def set_metadata(app: App, machine: str, pairs: tuple[str, ...]) -> int:
    from fleet.machines import parse_assignments

    assignments = parse_assignments(pairs)
    return _update(app, machine, dict(assignments), "Set")


@click.command(
    "unset-metadata",
    help="Remove dynamic metadata keys from a machine (a key from fleetd's own "
    "configuration is hidden too). MACHINE is a machine id or a unique prefix of one.",
)
@click.argument("machine")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@pass_app
def unset_metadata(app: App, machine: str, keys: tuple[str, ...]) -> int:
    from fleet.machines import parse_keys

    removals: dict[str, str | None] = dict.fromkeys(parse_keys(keys))
    return _update(app, machine, removals, "Unset")


COMMANDS = (set_metadata, unset_metadata)
