"""Where a remote command runs: the machine a machine-id prefix or a unit name
leads to, asked of the cluster through the one client (fleet's
``findAddressInMachineList``, ``findAddressInRunningUnits``), as a :class:`Call`:
machine id, public IP, command."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleet.core.model import DesiredState
from fleet.errors import FleetError

if TYPE_CHECKING:
    from fleet.core.model import Machine
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient


@dataclass(frozen=True)
class Call:
    """One command to run on one machine (``address`` is its public IP, "" if unknown)."""

    machine_id: str
    address: str
    argv: tuple[str, ...]


class LookupFailed(FleetError):
    """A machine or unit argument does not lead to a machine."""


class AmbiguousMachine(LookupFailed):
    """A machine-id prefix that matches several machines."""


def is_placed(info: UnitInfo) -> bool:
    """The unit is loaded or launched on a machine."""
    return info.current is not None and info.current is not DesiredState.INACTIVE


async def machine_by_prefix(client: FleetClient, prefix: str) -> Machine:
    """fleet's findAddressInMachineList: the one live machine whose id starts with ``prefix``."""
    found = [m for m in await client.list_machines() if m.id.startswith(prefix)]
    if len(found) > 1:
        raise AmbiguousMachine(
            f"found more than one machine for {prefix!r} ("
            + ", ".join(m.short_id + "..." for m in found)
            + "): give more of the machine id"
        )
    if not found:
        raise LookupFailed("machine does not exist")
    return found[0]


async def machine_of_unit(client: FleetClient, arg: str) -> Machine | None:
    """fleet's findAddressInRunningUnits: the machine a non-global unit is placed on
    (None if it is placed nowhere known)."""
    from fleet.core.names import mangle_unit_name

    info = await client.get_unit(mangle_unit_name(arg))
    if info is None:
        raise LookupFailed("unit does not exist")
    if info.is_global:
        raise LookupFailed("global units unsupported")
    if not info.machine_id:
        return None
    machines = {m.id: m for m in await client.list_machines()}
    return machines.get(info.machine_id)


async def _attempt(
    lookup: Awaitable[Machine | None],
) -> tuple[Machine | None, LookupFailed | None]:
    try:
        return await lookup, None
    except LookupFailed as exc:
        return None, exc


async def resolve_ssh_target(
    client: FleetClient, *, machine: str | None, unit: str | None, target: str | None
) -> Machine | None:
    if machine:
        return await machine_by_prefix(client, machine)
    if unit:
        return await machine_of_unit(client, unit)
    if target is None:
        raise LookupFailed("one machine or unit must be provided")
    by_machine, machine_error = await _attempt(machine_by_prefix(client, target))
    by_unit, _ = await _attempt(machine_of_unit(client, target))
    if by_machine is not None and by_unit is not None:
        raise LookupFailed(
            f"ambiguous argument, both machine and unit found for `{target}`.\n"
            "Please use flag `-m` or `-u` to refine the search"
        )
    if by_machine is None and by_unit is None:
        if isinstance(machine_error, AmbiguousMachine):
            raise machine_error
        raise LookupFailed("could not find matching unit or machine")
    return by_machine or by_unit


async def global_unit_calls(
    client: FleetClient, name: str, argv: tuple[str, ...], machines: dict[str, Machine]
) -> list[Call]:
    """``argv`` on every machine that publishes a state for global unit ``name``."""
    states = await client.list_unit_states(unit_name=name)
    ids = sorted({state.machine_id for state in states})
    return [Call(mid, machines[mid].public_ip if mid in machines else "", argv) for mid in ids]
