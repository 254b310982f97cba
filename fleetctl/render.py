"""Pure renderers for the list commands: model objects in, exact text out.

Table output is fleet's (field names, upper-cased headers, ``-`` for missing
values, short machine/hash legends, tabwriter layout), so scripts written
against fleet keep working. ``-o json`` (feature B2) emits the same data as a
JSON array of objects with stable snake_case keys; it always carries every
field, whatever ``--fields`` says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as default
from typing import TYPE_CHECKING, Any

from fleet.errors import InvalidInput
from fleetctl.tabwriter import tabulate

if TYPE_CHECKING:
    from fleet.core.model import Machine, UnitState
    from fleet.core.views import UnitInfo

MISSING = "-"
SHORT_HASH = 7


@dataclass(frozen=True)
class Legend:
    """How machines and hashes are abbreviated: the view a renderer needs of the cluster."""

    machines: Mapping[str, Machine]
    full: bool = False

    def machine_id(self, machine_id: str) -> str:
        return machine_id if self.full else f"{machine_id[:8]}..."

    def machine(self, machine_id: str) -> str:
        """``113f16a7.../172.17.8.103``; the IP only when the machine is live."""
        legend = self.machine_id(machine_id)
        machine = self.machines.get(machine_id)
        if machine is not None and machine.public_ip:
            legend = f"{legend}/{machine.public_ip}"
        return legend

    def hash(self, hash_: str) -> str:
        return hash_ if self.full else hash_[:SHORT_HASH]


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_fields(spec: str, valid: Iterable[str]) -> list[str]:
    """Split ``--fields``; fleet's messages for an empty or unknown field."""
    if not spec:
        raise InvalidInput("Must define output format")
    fields = spec.split(",")
    known = list(valid)
    for field in fields:
        if field not in known:
            raise InvalidInput(
                f"Invalid key in output format: {_go_quote(field)} (valid: {', '.join(known)})"
            )
    return fields


def metadata_text(metadata: Mapping[str, str]) -> str:
    return ",".join(f"{key}={metadata[key]}" for key in sorted(metadata))


def _table(fields: Sequence[str], rows: Iterable[Sequence[str]], legend: bool) -> str:
    lines: list[Sequence[str]] = [[field.upper() for field in fields]] if legend else []
    lines.extend([cell or MISSING for cell in row] for row in rows)
    return tabulate(lines)


# --- list-unit-files --------------------------------------------------------------------

UnitInfoField = Callable[["UnitInfo", Legend], str]


def _target(info: UnitInfo, legend: Legend) -> str:
    if info.is_global:
        return "global"
    return legend.machine(info.machine_id) if info.machine_id else MISSING


UNIT_FILE_FIELDS: dict[str, UnitInfoField] = {
    "unit": lambda info, _: info.name,
    "hash": lambda info, legend: legend.hash(info.hash),
    "dstate": lambda info, _: str(info.desired),
    "state": lambda info, _: MISSING if info.current is None else str(info.current),
    "target": _target,
    "tmachine": _target,
    "global": lambda info, _: "true" if info.is_global else "false",
    "desc": lambda info, _: info.description,
    # Why the engine could not place it, else why it failed where it runs.
    "reason": lambda info, _: info.reason or info.failure or MISSING,
}
DEFAULT_UNIT_FILE_FIELDS = "unit,hash,dstate,state,target"


def render_unit_files(
    infos: Iterable[UnitInfo], fields: Sequence[str], legend: Legend, *, header: bool = True
) -> str:
    return _table(
        fields,
        ([UNIT_FILE_FIELDS[field](info, legend) for field in fields] for info in infos),
        header,
    )


def unit_files_json(infos: Iterable[UnitInfo], machines: Mapping[str, Machine]) -> str:
    items: list[dict[str, Any]] = []
    for info in infos:
        machine = machines.get(info.machine_id) if info.machine_id else None
        items.append(
            {
                "unit": info.name,
                "hash": info.hash,
                "desired_state": str(info.desired),
                "current_state": None if info.current is None else str(info.current),
                "global": info.is_global,
                "target_machine_id": info.machine_id,
                "target_ip": machine.public_ip or None if machine else None,
                "description": info.description or None,
                "reason": info.reason,
                "failure": info.failure,
            }
        )
    return json.dumps(items, indent=2) + "\n"


# --- list-units ------------------------------------------------------------------------

UnitStateField = Callable[["UnitState", Legend], str]

UNIT_FIELDS: dict[str, UnitStateField] = {
    "unit": lambda state, _: state.name,
    "machine": lambda state, legend: legend.machine(state.machine_id),
    "load": lambda state, _: state.load_state,
    "active": lambda state, _: state.active_state,
    "sub": lambda state, _: state.sub_state,
    "hash": lambda state, legend: legend.hash(state.hash),
}
DEFAULT_UNIT_FIELDS = "unit,machine,active,sub"


def sorted_states(states: Iterable[UnitState]) -> list[UnitState]:
    return sorted(states, key=lambda state: (state.name, state.machine_id))


def render_units(
    states: Iterable[UnitState], fields: Sequence[str], legend: Legend, *, header: bool = True
) -> str:
    return _table(
        fields,
        (
            [UNIT_FIELDS[field](state, legend) for field in fields]
            for state in sorted_states(states)
        ),
        header,
    )


def units_json(states: Iterable[UnitState], machines: Mapping[str, Machine]) -> str:
    items: list[dict[str, Any]] = []
    for state in sorted_states(states):
        machine = machines.get(state.machine_id)
        items.append(
            {
                "unit": state.name,
                "machine_id": state.machine_id,
                "machine_ip": machine.public_ip or None if machine else None,
                "load_state": state.load_state or None,
                "active_state": state.active_state or None,
                "sub_state": state.sub_state or None,
                "hash": state.hash or None,
            }
        )
    return json.dumps(items, indent=2) + "\n"


# --- list-machines ---------------------------------------------------------------------


@dataclass(frozen=True)
class MachineContext:
    """What the status, leader and units fields need beyond the machine itself."""

    leader: str | None = None  # the engine leader's machine id
    units: Mapping[str, int] | None = None  # machine id -> units with a state there
    lost: Mapping[str, float | None] = default(default_factory=dict)  # id -> lost since

    def status(self, machine: Machine) -> str:
        if machine.id in self.lost:
            return "lost"
        return "ok" if machine.cordon is None else "cordoned"

    def unit_count(self, machine: Machine) -> int | None:
        return None if self.units is None else self.units.get(machine.id, 0)


MachineField = Callable[["Machine", Legend, MachineContext], str]


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


MACHINE_FIELDS: dict[str, MachineField] = {
    "machine": lambda machine, legend, _: legend.machine_id(machine.id),
    "ip": lambda machine, _, __: machine.public_ip,
    "metadata": lambda machine, _, __: metadata_text(machine.metadata),
    # Not fleet's: "-" unless cordoned, then the reason (or "cordoned").
    "cordon": lambda machine, _, __: "" if machine.cordon is None else machine.cordon or "cordoned",
    # Not fleet's (issue 11): ok, cordoned or lost; "*" on the engine leader; the
    # fleetd version; how many units have a state there.
    "status": lambda machine, _, context: context.status(machine),
    "leader": lambda machine, _, context: "*" if machine.id == context.leader else "",
    "version": lambda machine, _, __: machine.version,
    "units": lambda machine, _, context: _count(context.unit_count(machine)),
}
DEFAULT_MACHINE_FIELDS = "machine,ip,metadata"


def render_machines(
    machines: Iterable[Machine],
    fields: Sequence[str],
    legend: Legend,
    *,
    header: bool = True,
    context: MachineContext | None = None,
) -> str:
    ordered = sorted(machines, key=lambda machine: machine.id)
    known = context or MachineContext()
    return _table(
        fields,
        (
            [MACHINE_FIELDS[field](machine, legend, known) for field in fields]
            for machine in ordered
        ),
        header,
    )


def machines_json(machines: Iterable[Machine], context: MachineContext | None = None) -> str:
    known = context or MachineContext()
    items = [
        {
            "machine_id": machine.id,
            "ip": machine.public_ip or None,
            "metadata": dict(sorted(machine.metadata.items())),
            "cordoned": machine.cordon is not None,
            "cordon_reason": machine.cordon,
            "status": known.status(machine),
            "lost_since": known.lost.get(machine.id),
            "leader": machine.id == known.leader,
            "version": machine.version or None,
            "units": known.unit_count(machine),
        }
        for machine in sorted(machines, key=lambda machine: machine.id)
    ]
    return json.dumps(items, indent=2) + "\n"


# --- single-line messages ---------------------------------------------------------------


def state_reached_line(info: UnitInfo, legend: Legend) -> str:
    """fleet's ``Unit X launched on 113f16a7.../172.17.8.103`` (no ``on`` part when
    the unit has no live machine)."""
    state = info.desired if info.current is None else info.current
    line = f"Unit {info.name} {state}"
    if info.machine_id and info.machine_id in legend.machines:
        line = f"{line} on {legend.machine(info.machine_id)}"
    return line


def go_list(names: Sequence[str]) -> str:
    """Go's ``%v`` of a string slice, as in ``Successfully stopped units [a b].``"""
    return "[" + " ".join(names) + "]"
