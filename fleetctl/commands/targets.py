"""What a unit command acts on, and how it waits: shared by every unit command.

A command-line argument becomes a :class:`UnitArg` (mangled and validated, in
order, without duplicates); its unit file comes from the local file, else for
an instance from the registry's or the local template. ``--block-attempts`` /
``--no-block`` and the :class:`~fleetctl.waiting.Waiter` are the same for
every command that waits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from fleet.errors import InvalidInput, InvalidUnitFile

if TYPE_CHECKING:
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient
    from fleetctl.context import App
    from fleetctl.waiting import Waiter


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


def check_unit(app: App, name: str, unit: UnitFile) -> None:
    """The rules fleet applies to a unit's write (:func:`fleet.units.check_unit`:
    name, ``[X-Fleet]``, size), run before a command's first write; warnings printed."""
    from fleet.core.model import DesiredState
    from fleet.units import check_unit as check_write

    # Units are (re-)created inactive; the command's own target was checked already.
    for warning in check_write(name, unit, DesiredState.INACTIVE).warnings:
        app.warn(f"WARNING: Unit {name}: {warning}")


async def registry_units(client: FleetClient, targets: Sequence[UnitArg]) -> list[UnitInfo]:
    """fleet's findUnits: the named units that exist; unknown names are dropped."""
    infos = [await client.get_unit(target.name) for target in targets]
    return [info for info in infos if info is not None]


def waiter(app: App, client: FleetClient) -> Waiter:
    """The command's waiter: on a terminal, with a live row per unit when it waits for
    several (fleetctl.progress); elsewhere fleet's lines."""
    from fleetctl.progress import LiveRows, wants_live
    from fleetctl.waiting import Waiter

    def live(names: Sequence[str], title: str) -> LiveRows | None:
        return LiveRows(app.out, names, title) if wants_live(app.out, len(names)) else None

    return Waiter(client, app.clock(), app.echo, live=live)


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
