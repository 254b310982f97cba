"""``fleetctl plan UNIT...``: where units would run, and why, without writing (B14).

The cluster is read through the client exactly as the engine sees it (units
with their desired states and schedule, live machines with their metadata),
the named units are added as if started, and the same pure scheduler the
engine runs (:func:`fleet.core.scheduler.plan`) answers. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from fleetctl.commands.targets import unit_args, unit_source
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.model import Machine
    from fleet.core.scheduler import SchedUnit
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)

UNPLACEABLE_EXIT = 2  # as `fleetctl start` of an unplaceable unit (B1)


@dataclass(frozen=True)
class Outcome:
    """One row of the answer: the unit, its machine(s) ("" if none), why."""

    unit: str
    machines: tuple[str, ...]
    reason: str


def _as_started(name: str, unit: UnitFile) -> SchedUnit:
    """The unit as `fleetctl start` would make it: desired launched."""
    from fleet.core.model import DesiredState
    from fleet.core.requirements import validate_unit
    from fleet.core.scheduler import SchedUnit

    return SchedUnit(name, unit.hash, DesiredState.LAUNCHED, validate_unit(name, unit))


def decide(
    infos: list[UnitInfo], machines: list[Machine], wanted: dict[str, SchedUnit]
) -> list[Outcome]:
    """Pure: the outcome for every wanted unit, given the cluster as listed."""
    from fleet.core.model import DesiredState
    from fleet.core.reasons import Reason
    from fleet.core.requirements import parse_requirements
    from fleet.core.scheduler import SchedUnit, Snapshot, explain, global_units_for, plan

    units: dict[str, SchedUnit] = {}
    schedule: dict[str, str] = {}
    for info in infos:
        if info.desired is DesiredState.INACTIVE and info.name not in wanted:
            continue
        units[info.name] = SchedUnit(
            info.name, info.hash, info.desired, parse_requirements(info.name, info.unit)
        )
        if info.machine_id is not None:
            schedule[info.name] = info.machine_id
    units.update(wanted)
    by_id = {m.id: m for m in machines}
    snapshot = Snapshot(units=units, machines=by_id, schedule=schedule)
    result = plan(snapshot)
    after = result.result(snapshot)
    placed = {p.name: p for p in result.place}
    outcomes: list[Outcome] = []
    for name, unit in wanted.items():
        if unit.is_global:
            hosts = tuple(m.id for m in machines if name in global_units_for(m, units.values()))
            why = "global unit: runs on every machine that fits" if hosts else "no machine fits"
            outcomes.append(Outcome(name, hosts, why))
        elif name in result.unplaceable:
            outcomes.append(Outcome(name, (), explain(name, result.unplaceable[name])))
        elif name in placed:
            p = placed[name]
            # A spread placement says which value it chose and what that value held.
            why = p.reason.text(p.detail) if p.reason is Reason.PLACED_SPREAD else p.reason.text()
            outcomes.append(Outcome(name, (after[name],), why))
        else:
            outcomes.append(Outcome(name, (after[name],), "already scheduled there"))
    return outcomes


@click.command(
    "plan", help="Show where units would be scheduled, and why, without changing anything."
)
@click.argument("units", nargs=-1, required=True)
@click.option("--full", is_flag=True, help="Do not ellipsize machine ids.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"], case_sensitive=False),
    default="table",
    show_default=True,
    help="Output format.",
)
@pass_app
def plan_command(app: App, units: tuple[str, ...], full: bool, output: str) -> int:
    import json

    from fleetctl.render import Legend
    from fleetctl.tabwriter import tabulate

    targets = unit_args(units)

    async def body(client: FleetClient) -> int:
        infos = await client.list_units()
        known = {info.name: info for info in infos}
        wanted = {}
        for target in targets:
            info = known.get(target.name)
            unit = info.unit if info is not None else await unit_source(client, target)
            wanted[target.name] = _as_started(target.name, unit)
        machines = await client.list_machines()
        outcomes = decide(infos, machines, wanted)
        legend = Legend({m.id: m for m in machines}, full)
        if output == "json":
            rows = [
                {"unit": o.unit, "machines": list(o.machines), "reason": o.reason} for o in outcomes
            ]
            app.write(json.dumps(rows, indent=2) + "\n")
        else:
            table = [("UNIT", "MACHINE", "REASON")] + [
                (o.unit, ",".join(legend.machine(m) for m in o.machines) or "-", o.reason)
                for o in outcomes
            ]
            app.write(tabulate(table))
        return 0 if all(o.machines for o in outcomes) else UNPLACEABLE_EXIT

    return app.run(body)


COMMANDS = (plan_command,)
