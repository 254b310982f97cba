"""Commands that put units into the cluster and raise them: submit, load, start (and cat).

Every command validates all of its arguments (names, local files, templates,
``[X-Fleet]`` requirements) before its first write, so bad input never leaves
half of a batch behind. Messages, the stdout/stderr split and exit codes are
fleet's, except where ``docs/cli.md`` says they change on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from fleet.core.model import DesiredState
from fleet.errors import AlreadyExists, InvalidInput, NotFound
from fleetctl.commands.rolling import rolling_options
from fleetctl.commands.targets import (
    UnitArg,
    block_options,
    check_unit,
    local_unit,
    unit_args,
    unit_source,
    waiter,
)
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient

SIGN_DEPRECATED = "WARNING: The signed/verified units feature is DEPRECATED and cannot be used."
COMMAND_TARGET = {
    "submit": DesiredState.INACTIVE,
    "load": DesiredState.LOADED,
    "start": DesiredState.LAUNCHED,
}

pass_app = click.make_pass_decorator(App)


# --- submit / load / start ------------------------------------------------------------


@dataclass(frozen=True)
class UnitWrite:
    name: str
    unit: UnitFile
    replace: bool


async def plan_creation(
    app: App, client: FleetClient, targets: Sequence[UnitArg], command: str, replace: bool
) -> list[UnitWrite]:
    """Decide, without writing, which units to create or replace (fleet's
    lazyCreateUnits + checkReplaceUnitState)."""
    from fleet.core.names import check_activation
    from fleetctl.replace import ReplaceVerdict, replace_verdict, verdict_message

    writes: list[UnitWrite] = []
    for target in targets:
        check_activation(target.name, COMMAND_TARGET[command])
        existing = await client.get_unit(target.name)
        if existing is None:
            unit = await unit_source(client, target)
        else:
            local = local_unit(target)
            if not replace:
                if local is not None and local[0].hash != existing.hash:
                    kind = "unit file" if local[1] == target.path else "template unit file"
                    app.warn(
                        f"WARNING: Unit {target.name} in registry differs from local {kind} "
                        f"{target.path}. Add --replace to override."
                    )
                continue
            if local is None:
                raise InvalidInput(
                    f"unable to find local unit file {target.path} to replace Unit({target.name})"
                )
            unit = local[0]
            verdict = replace_verdict(command, existing.desired, unit.hash, existing.hash)
            if verdict is ReplaceVerdict.SAME:
                app.echo(verdict_message(verdict, target.name, existing.desired))
                continue
            if verdict is ReplaceVerdict.REFUSED:
                app.warn(verdict_message(verdict, target.name, existing.desired))
                continue
        check_unit(app, target.name, unit)
        writes.append(UnitWrite(target.name, unit, existing is not None))
    return writes


async def create_units(
    app: App,
    client: FleetClient,
    *,
    targets: Sequence[UnitArg],
    command: str,
    replace: bool,
    attempts: int,
) -> None:
    from fleet.core.views import unit_is_global
    from fleetctl.waiting import NO_BLOCK

    writes = await plan_creation(app, client, targets, command, replace)
    for write in writes:
        # A (re-)created unit starts inactive, as in fleet; load/start then
        # raise it, so agents see one clean hash change.
        if write.replace:
            await client.replace_unit(write.name, write.unit, DesiredState.INACTIVE)
        else:
            try:
                await client.create_unit(write.name, write.unit, DesiredState.INACTIVE)
            except AlreadyExists:
                # Another client created it between our check and our write: the
                # same file is a unit that exists (as if seen by the check), a
                # different one is the usual conflict.
                existing = await client.get_unit(write.name)
                if existing is None or existing.hash != write.unit.hash:
                    raise
    # Like fleet, the creation line is for units the engine schedules: a global
    # unit has no state of its own to report.
    created = [w.name for w in writes if not unit_is_global(w.name, w.unit)]
    if not created:
        return
    if attempts == NO_BLOCK:
        for name in created:
            app.echo(f"Unit {name} {DesiredState.INACTIVE}")  # just created: it is
    else:
        await waiter(app, client).wait_unit_states(created, DesiredState.INACTIVE, attempts)


async def trigger(
    app: App, client: FleetClient, names: Sequence[str], target: DesiredState, verb: str
) -> list[UnitInfo]:
    """Set the desired state of every unit that is not there yet (fleet's
    setTargetStateOfUnits); returns the non-global units to wait for."""
    infos: list[UnitInfo] = []
    for name in names:
        info = await client.get_unit(name)
        if info is None:
            raise NotFound(f"unable to find unit {name}")
        infos.append(info)
    waiting: list[UnitInfo] = []
    changing: list[UnitInfo] = []
    for info in infos:
        if info.desired == target:
            # Already asked for: still judged when the engine could not place it or
            # it failed (fleet returned silently), quietly done otherwise.
            if not info.is_global and (info.reason or info.failure):
                waiting.append(info)
            continue
        changing.append(info)
    # One write for all of them: the engine never judges a unit while a unit it
    # follows (MachineOf) is still waiting for its own desired state.
    await client.set_desired_states({info.name: target for info in changing})
    for info in changing:
        if info.is_global:
            app.echo(f"Triggered global unit {info.name} {verb}")
        else:
            waiting.append(info)
    return waiting


def unit_command(
    command: str,
) -> Callable[[Callable[..., int]], click.Command]:
    """submit/load/start share arguments and flags."""

    def decorate(func: Callable[..., int]) -> click.Command:
        func = click.option(
            "--sign", is_flag=True, hidden=True, help="DEPRECATED: unit signing is not supported."
        )(func)
        func = click.option(
            "--replace",
            is_flag=True,
            help="Replace the unit in the registry if the local file differs.",
        )(func)
        if command != "submit":
            func = block_options(func)
        if command == "start":
            func = rolling_options(
                parallel_default=None, failure_modes=("pause", "continue", "rollback")
            )(func)
        func = click.argument("units", nargs=-1)(func)
        return click.command(command, help=UNIT_HELP[command])(pass_app(func))

    return decorate


UNIT_HELP = {
    "submit": "Upload one or more units to the cluster without starting them.",
    "load": "Schedule one or more units in the cluster, first submitting them if necessary.",
    "start": "Instruct systemd to start one or more units in the cluster, "
    "first submitting and loading if necessary.",
}


def _activate(
    app: App,
    command: str,
    *,
    units: Sequence[str],
    replace: bool,
    sign: bool,
    attempts: int,
    no_block: bool,
) -> int:
    from fleetctl.waiting import NO_BLOCK, block_attempts

    if sign:
        app.warn(SIGN_DEPRECATED)
        return 2
    if not units:
        app.warn("No units given")
        return 0
    targets = unit_args(units)
    attempts = block_attempts(attempts, no_block)
    target = COMMAND_TARGET[command]

    async def body(client: FleetClient) -> int:
        await create_units(
            app, client, targets=targets, command=command, replace=replace, attempts=attempts
        )
        if command == "submit":
            return 0
        names = [target_.name for target_ in targets]
        waiting = await trigger(app, client, names, target, command)
        if attempts == NO_BLOCK:
            for info in waiting:
                app.echo(f"Triggered unit {info.name} {command}")
            return 0
        wait = waiter(app, client)
        await wait.wait_unit_states([info.name for info in waiting], target, attempts)
        if command == "start" and waiting:
            placed = [await client.get_unit(info.name) for info in waiting]
            await wait.wait_launch_outcomes([info for info in placed if info], attempts)
        return 0

    return app.run(body)


@unit_command("submit")
def submit(app: App, *, units: tuple[str, ...], replace: bool, sign: bool) -> int:
    return _activate(
        app, "submit", units=units, replace=replace, sign=sign, attempts=0, no_block=False
    )


@unit_command("load")
def load(
    app: App,
    *,
    units: tuple[str, ...],
    replace: bool,
    sign: bool,
    block_attempts: int,
    no_block: bool,
) -> int:
    return _activate(
        app,
        "load",
        units=units,
        replace=replace,
        sign=sign,
        attempts=block_attempts,
        no_block=no_block,
    )


@unit_command("start")
def start(
    app: App,
    *,
    units: tuple[str, ...],
    replace: bool,
    sign: bool,
    block_attempts: int,
    no_block: bool,
    max_parallel: int | None,
    min_healthy_time: float,
    healthy_timeout: float,
    on_failure: str,
) -> int:
    if max_parallel is not None:
        # A rolling replace (B6): fleetctl/commands/rolling.py.
        from fleetctl.commands.rolling import roll_settings, rolling_replace

        if not replace or no_block or sign:
            raise click.UsageError("--max-parallel goes with --replace, without --no-block")
        settings = roll_settings(max_parallel, min_healthy_time, healthy_timeout, on_failure)
        return rolling_replace(app, units, settings)
    return _activate(
        app,
        "start",
        units=units,
        replace=replace,
        sign=sign,
        attempts=block_attempts,
        no_block=no_block,
    )


@click.command("cat", help="Output the contents of a submitted unit.")
@click.argument("units", nargs=-1)
@pass_app
def cat(app: App, units: tuple[str, ...]) -> int:
    if len(units) != 1:
        raise InvalidInput("One unit file must be provided")
    (target,) = unit_args(units)

    async def body(client: FleetClient) -> int:
        info = await client.get_unit(target.name)
        if info is None:
            raise NotFound(f"Unit {target.name} not found")
        app.write(info.unit.serialize())
        return 0

    return app.run(body)


COMMANDS = (submit, load, start, cat)
