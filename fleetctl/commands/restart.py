"""``fleetctl restart``: each unit stopped, then started, every step waited for;
a global unit gets ``systemctl restart`` instead, on every machine that runs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.core.model import DesiredState
from fleetctl.commands.remote import ssh_port_option
from fleetctl.context import App
from fleetctl.runner import Remote
from fleetctl.targets import Call, global_unit_calls, is_placed

if TYPE_CHECKING:
    from fleet.core.model import Machine
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)


@click.command(
    "restart",
    help="Restart one or more units in the cluster: a stop then a start, waited for. "
    "Global units are restarted with systemctl on every machine that runs them.",
)
@click.argument("units", nargs=-1)
@click.option(
    "--block-attempts",
    type=int,
    default=0,
    show_default=True,
    help="Wait at most this many attempts (about 2 s each) per step; 0 waits forever.",
)
@ssh_port_option
@pass_app
def restart(app: App, units: tuple[str, ...], block_attempts: int, ssh_port: int) -> int:
    from fleetctl.commands.targets import registry_units, unit_args, waiter
    from fleetctl.commands.units import create_units
    from fleetctl.waiting import block_attempts as attempts_of

    if not units:
        app.warn("No units given")
        return 0
    targets = unit_args(units)
    attempts = attempts_of(block_attempts, no_block=False)

    async def step(client: FleetClient, info: UnitInfo, state: DesiredState) -> None:
        await client.set_desired_state(info.name, state)
        await waiter(app, client).wait_unit_states([info.name], state, attempts)

    async def body(client: FleetClient) -> list[Call]:
        # Like fleet, the units to restart are those that existed before the
        # lazy submit: a unit created now is inactive and cannot be restarted.
        infos = await registry_units(client, targets)
        await create_units(
            app, client, targets=targets, command="submit", replace=False, attempts=attempts
        )
        machines: dict[str, Machine] | None = None
        calls: list[Call] = []
        for info in infos:
            if info.is_global:
                if machines is None:
                    machines = {m.id: m for m in await client.list_machines()}
                argv = ("systemctl", "restart", info.name)
                calls += await global_unit_calls(client, info.name, argv, machines)
            elif not is_placed(info):
                app.warn(f"Unable to restart unit {info.name} in state inactive")
            elif info.current is DesiredState.LOADED:
                await step(client, info, DesiredState.LAUNCHED)
            else:
                await step(client, info, DesiredState.LOADED)
                await step(client, info, DesiredState.LAUNCHED)
        return calls

    with app.session():
        calls = app.run(body)
        with Remote(app, ssh_port) as remote:
            first = 0
            for call in calls:
                first = first or remote.run(call)
            return first


COMMANDS = (restart,)
