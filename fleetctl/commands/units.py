"""Commands that change units: submit, load, start, stop, unload, destroy (and cat).

Every command validates all of its arguments (names, local files, templates,
``[X-Fleet]`` requirements) before its first write, so bad input never leaves
half of a batch behind. Messages, the stdout/stderr split and exit codes are
fleet's, except where ``features.md`` changes them on purpose.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from fleet.core.model import DesiredState
from fleet.errors import FleetError, InvalidInput, InvalidUnitFile, NotFound
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient
    from fleetctl.waiting import Waiter

SIGN_DEPRECATED = "WARNING: The signed/verified units feature is DEPRECATED and cannot be used."
COMMAND_TARGET = {
    "submit": DesiredState.INACTIVE,
    "load": DesiredState.LOADED,
    "start": DesiredState.LAUNCHED,
}

pass_app = click.make_pass_decorator(App)


# --- argument handling ------------------------------------------------------------------


@dataclass(frozen=True)
class UnitArg:
    """One command-line unit argument: the unit name and where its file would be."""

    arg: str
    name: str
    path: str  # the argument's directory + the mangled name (fleet appends the suffix)


def unit_args(args: Sequence[str]) -> list[UnitArg]:
    """Mangle, validate and de-duplicate unit arguments, keeping their order."""
    from fleet.core.names import mangle_unit_name, validate_unit_name

    seen: dict[str, UnitArg] = {}
    for arg in args:
        name = mangle_unit_name(arg)
        validate_unit_name(name)
        if name not in seen:
            seen[name] = UnitArg(arg, name, os.path.join(os.path.dirname(arg), name))
    return list(seen.values())


def read_unit_file(path: str) -> UnitFile | None:
    """The parsed unit file at ``path``, or None if there is no such file."""
    from fleet.core.unitfile import UnitFile

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidUnitFile(f"unable to read unit file {path}: {exc}") from exc
    try:
        return UnitFile.parse(text)
    except InvalidUnitFile as exc:
        raise InvalidUnitFile(f"unable to parse unit file {path}: {exc}") from exc


def template_path(target: UnitArg) -> str | None:
    """``dir/foo@.service`` for an instance argument ``dir/foo@1.service``."""
    from fleet.core.names import UnitName

    template = UnitName.parse(target.name).template
    if template is None:
        return None
    return os.path.join(os.path.dirname(target.path), template)


def local_unit(target: UnitArg) -> tuple[UnitFile, str] | None:
    """The unit file on disk for an argument (its own file, else its local template)."""
    unit = read_unit_file(target.path)
    if unit is not None:
        return unit, target.path
    template = template_path(target)
    if template is not None:
        unit = read_unit_file(template)
        if unit is not None:
            return unit, template
    return None


async def unit_source(client: FleetClient, target: UnitArg) -> UnitFile:
    """What a new unit is created from: its local file, else (for an instance)
    its template from the registry, else the template next to the given path."""
    from fleet.core.names import UnitName

    unit = read_unit_file(target.path)
    if unit is not None:
        return unit
    template_name = UnitName.parse(target.name).template
    if template_name is None:
        raise InvalidInput(f"unable to find unit file {target.path}")
    template = await client.get_unit(template_name)
    if template is not None:
        return template.unit
    path = template_path(target)
    unit = read_unit_file(path) if path else None
    if unit is None:
        raise InvalidInput(
            f"unable to find template Unit({template_name}) in Registry or on filesystem"
        )
    return unit


def check_requirements(app: App, name: str, unit: UnitFile) -> None:
    from fleet.core.requirements import validate_unit

    for warning in validate_unit(name, unit).warnings:
        app.warn(f"WARNING: Unit {name}: {warning}")


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
    from fleet.core.names import UnitName
    from fleetctl.replace import ReplaceVerdict, replace_verdict, verdict_message

    writes: list[UnitWrite] = []
    for target in targets:
        if command != "submit" and UnitName.parse(target.name).is_template:
            raise InvalidInput(f'cannot activate template "{target.name}"')
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
        check_requirements(app, target.name, unit)
        writes.append(UnitWrite(target.name, unit, existing is not None))
    return writes


def waiter(app: App, client: FleetClient) -> Waiter:
    from fleetctl.waiting import Waiter

    return Waiter(client, app.clock_factory(), app.echo)


async def create_units(
    app: App,
    client: FleetClient,
    *,
    targets: Sequence[UnitArg],
    command: str,
    replace: bool,
    attempts: int,
) -> None:
    from fleetctl.waiting import NO_BLOCK

    writes = await plan_creation(app, client, targets, command, replace)
    for write in writes:
        # A (re-)created unit starts inactive, as in fleet; load/start then
        # raise it, so agents see one clean hash change.
        if write.replace:
            await client.replace_unit(write.name, write.unit, DesiredState.INACTIVE)
        else:
            await client.create_unit(write.name, write.unit, DesiredState.INACTIVE)
    if writes and attempts != NO_BLOCK:
        await waiter(app, client).wait_unit_states(
            [write.name for write in writes], DesiredState.INACTIVE, attempts
        )


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
    for info in infos:
        if info.desired == target:
            continue
        await client.set_desired_state(info.name, target)
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
        func = click.argument("units", nargs=-1)(func)
        return click.command(command, help=UNIT_HELP[command])(pass_app(func))

    return decorate


def block_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--no-block", is_flag=True, help="Do not wait until the units reach their target state."
    )(func)
    return click.option(
        "--block-attempts",
        type=int,
        default=0,
        show_default=True,
        help="Wait at most this many attempts (about 2 s each) for the units; 0 waits forever.",
    )(func)


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
            await wait.wait_systemd_active([info for info in placed if info], attempts)
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
) -> int:
    return _activate(
        app,
        "start",
        units=units,
        replace=replace,
        sign=sign,
        attempts=block_attempts,
        no_block=no_block,
    )


# --- stop / unload / destroy ------------------------------------------------------------


async def registry_units(client: FleetClient, targets: Sequence[UnitArg]) -> list[UnitInfo]:
    """fleet's findUnits: the named units that exist; unknown names are dropped."""
    infos = [await client.get_unit(target.name) for target in targets]
    return [info for info in infos if info is not None]


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
        for target in targets:
            # A unit that is already gone is fine: destroy is idempotent.
            await client.destroy_unit(target.name)
            app.echo(f"Destroyed {target.name}")
        if attempts != NO_BLOCK:
            await waiter(app, client).wait_destroyed([t.name for t in targets], attempts)
        return 0

    return app.run(body)


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


COMMANDS = (submit, load, start, stop, unload, destroy, cat)
