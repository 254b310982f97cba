"""Commands that lower or remove units: stop, unload, destroy.

stop and unload act on the named units the registry has (unknown names are
dropped, as fleet's findUnits did), set the lower desired state and wait for
the non-global ones unless ``--no-block``; destroy is idempotent and waits
until the agents dropped the units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from fleet.core.model import DesiredState
from fleet.errors import FleetError
from fleetctl.commands.targets import block_options, registry_units, unit_args, waiter
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)


async def lower_desired_state(
    app: App,
    client: FleetClient,
    infos: Sequence[UnitInfo],
    desired: DesiredState,
    *,
    verb: str,
    attempts: int,
) -> None:
    """stop/unload: set ``desired`` on each unit, then wait for the non-global ones
    (globals never report a current state) unless ``--no-block``."""
    from fleetctl.render import go_list
    from fleetctl.waiting import NO_BLOCK

    waiting: list[str] = []
    for info in infos:
        await client.set_desired_state(info.name, desired)
        if info.is_global:
            app.echo(f"Triggered global unit {info.name} {verb}")
        else:
            waiting.append(info.name)
    if attempts == NO_BLOCK:
        for name in waiting:
            app.echo(f"Triggered unit {name} {verb}")
    else:
        await waiter(app, client).wait_unit_states(waiting, desired, attempts)
    if waiting:  # globals were only triggered: there is nothing to report on
        done = {"stop": "stopped", "unload": "unloaded"}[verb]
        app.warn(f"Successfully {done} units {go_list(waiting)}.")


def _lower_command(
    app: App,
    units: tuple[str, ...],
    block_attempts: int,
    no_block: bool,
    *,
    desired: DesiredState,
    verb: str,
    choose: Callable[[list[UnitInfo]], list[UnitInfo]],
) -> int:
    """stop/unload: registry units only (unknown names dropped), ``choose`` picks
    the ones to change (or refuses), then :func:`lower_desired_state`."""
    from fleetctl.waiting import block_attempts as attempts_of

    if not units:
        app.warn("No units given")
        return 0
    targets = unit_args(units)
    attempts = attempts_of(block_attempts, no_block)

    async def body(client: FleetClient) -> int:
        infos = await registry_units(client, targets)
        if not infos:
            app.warn("Units not found in registry")
            return 0
        todo = choose(infos)
        await lower_desired_state(app, client, todo, desired, verb=verb, attempts=attempts)
        return 0

    return app.run(body)


def _stoppable(infos: list[UnitInfo]) -> list[UnitInfo]:
    for info in infos:
        if not info.is_global and info.current is DesiredState.INACTIVE:
            raise FleetError(f"Unable to stop unit {info.name} in state inactive")
    return [info for info in infos if info.is_global or info.current is not DesiredState.LOADED]


def _unloadable(infos: list[UnitInfo]) -> list[UnitInfo]:
    # fleet skips units whose *current* state is inactive even when their desired
    # state is not (an unplaceable unit could then never be unloaded); we skip
    # only units that are inactive on both counts.
    return [
        info
        for info in infos
        if not (
            info.desired is DesiredState.INACTIVE
            and (info.is_global or info.current is DesiredState.INACTIVE)
        )
    ]


@click.command("stop", help="Instruct systemd to stop one or more units in the cluster.")
@click.argument("units", nargs=-1)
@block_options
@pass_app
def stop(app: App, units: tuple[str, ...], block_attempts: int, no_block: bool) -> int:
    return _lower_command(
        app,
        units,
        block_attempts,
        no_block,
        desired=DesiredState.LOADED,
        verb="stop",
        choose=_stoppable,
    )


@click.command("unload", help="Unschedule one or more units in the cluster.")
@click.argument("units", nargs=-1)
@block_options
@pass_app
def unload(app: App, units: tuple[str, ...], block_attempts: int, no_block: bool) -> int:
    return _lower_command(
        app,
        units,
        block_attempts,
        no_block,
        desired=DesiredState.INACTIVE,
        verb="unload",
        choose=_unloadable,
    )


@click.command("destroy", help="Destroy one or more units in the cluster.")
@click.argument("units", nargs=-1)
@block_options
@pass_app
def destroy(app: App, units: tuple[str, ...], block_attempts: int, no_block: bool) -> int:
    from fleetctl.waiting import NO_BLOCK
    from fleetctl.waiting import block_attempts as attempts_of

    if not units:
        app.warn("No units given")
        return 0
    targets = unit_args(units)
    attempts = attempts_of(block_attempts, no_block)

    async def body(client: FleetClient) -> int:
        destroyed = []
        for target in targets:
            # A unit that is already gone is fine (destroy is idempotent); like
            # fleet, only units that were there are reported.
            if await client.destroy_unit(target.name):
                app.echo(f"Destroyed {target.name}")
                destroyed.append(target.name)
        if not destroyed:
            app.warn("Units not found in registry")
            return 0
        if attempts != NO_BLOCK:
            await waiter(app, client).wait_destroyed(destroyed, attempts)
        return 0

    return app.run(body)


COMMANDS = (stop, unload, destroy)
