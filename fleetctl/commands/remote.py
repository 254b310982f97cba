"""Commands that run on the machine of a unit or of a machine id: ``ssh``,
``status``, ``journal``. Each first asks the cluster where to go (through the
one client inside :meth:`App.run`, with :mod:`fleetctl.targets`), then runs its
command there with :class:`~fleetctl.runner.Remote`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from fleet.errors import FleetError
from fleetctl.context import App
from fleetctl.runner import DEFAULT_SSH_PORT, Remote
from fleetctl.targets import Call, LookupFailed, global_unit_calls, is_placed, resolve_ssh_target

if TYPE_CHECKING:
    from fleet.core.model import Machine
    from fleetctl.client import FleetClient

pass_app = click.make_pass_decorator(App)


def trim_to_dashes(args: Sequence[str]) -> list[str]:
    """fleet's TrimToDashes: everything after the first ``--``, if there is one."""
    args = list(args)
    return args[args.index("--") + 1 :] if "--" in args else args


def ssh_port_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--ssh-port",
        type=int,
        default=DEFAULT_SSH_PORT,
        show_default=True,
        help="Connect to remote hosts over SSH using this TCP port.",
    )(func)


# --- ssh --------------------------------------------------------------------------------


@click.command(
    "ssh",
    help="Open an interactive shell on a machine in the cluster, or run COMMAND there.\n\n"
    "TARGET is a machine id (any unique prefix) or a unit name (the machine it runs on).",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("-m", "--machine", help="Open SSH connection to a specific machine.")
@click.option("-u", "--unit", help="Open SSH connection to machine running provided unit.")
@click.option(
    "-A", "--forward-agent", is_flag=True, help="Forward local ssh-agent to target machine."
)
@ssh_port_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[TARGET] [--] [COMMAND...]")
@pass_app
def ssh(
    app: App,
    *,
    machine: str | None,
    unit: str | None,
    forward_agent: bool,
    ssh_port: int,
    args: tuple[str, ...],
) -> int:
    if machine and unit:
        raise FleetError("Both machine and unit flags provided, please specify only one.")
    rest = list(args)
    target = None
    if not machine and not unit:
        target = rest.pop(0) if rest else None
    rest = trim_to_dashes(rest)

    async def lookup(client: FleetClient) -> Machine | None:
        try:
            return await resolve_ssh_target(client, machine=machine, unit=unit, target=target)
        except LookupFailed as exc:
            raise FleetError(f"Unable to proceed: {exc}") from exc

    with app.session():
        found = app.run(lookup)
        if found is None or not found.public_ip:
            raise FleetError("Requested machine could not be found.")
        with Remote(app, ssh_port) as remote:
            # fleet joins the words with spaces: the remote shell parses them.
            return remote.run_ssh(
                found.public_ip, " ".join(rest), forward_agent=forward_agent, pty=not rest
            )


# --- status -----------------------------------------------------------------------------


@click.command("status", help="Output the status of one or more units in the cluster.")
@click.argument("units", nargs=-1)
@ssh_port_option
# fleet's functional tests run `status --no-block`: accepted and ignored.
@click.option("--block-attempts", type=int, hidden=True, expose_value=False)
@click.option("--no-block", is_flag=True, hidden=True, expose_value=False)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"], case_sensitive=False),
    default="table",
    show_default=True,
    help="systemctl's status text, or a JSON array of each unit's systemd properties "
    "(systemctl show) on each of its machines.",
)
@pass_app
def status(app: App, units: tuple[str, ...], ssh_port: int, output: str) -> int:
    from fleetctl.commands.targets import unit_args

    if not units:
        raise FleetError("One or more units must be provided.")
    targets = unit_args(units)
    as_json = output.lower() == "json"

    async def plan(client: FleetClient) -> tuple[list[Call], list[Call]]:
        machines = {m.id: m for m in await client.list_machines()}
        placed: list[Call] = []
        global_: list[Call] = []
        for target in targets:
            info = await client.get_unit(target.name)
            if info is None:
                raise FleetError(f"Unit {target.name} does not exist.")
            if info.is_global:
                argv = (*SHOW, info.name) if as_json else ("systemctl", "status", info.name)
                global_ += await global_unit_calls(client, info.name, argv, machines)
                continue
            if not is_placed(info) or not info.machine_id:
                raise FleetError(f"Unit {target.name} does not appear to be loaded.")
            machine = machines.get(info.machine_id)
            address = machine.public_ip if machine else ""
            argv = (*SHOW, info.name) if as_json else ("systemctl", "status", "-l", info.name)
            placed.append(Call(info.machine_id, address, argv))
        return placed, global_

    with app.session():
        placed, global_ = app.run(plan)
        exit_code = 0
        with Remote(app, ssh_port) as remote:
            if as_json:
                return _status_json(app, remote, [*placed, *global_])
            for index, call in enumerate(placed):
                if index:
                    app.echo("")  # systemctl's own separator between units
                exit_code = remote.run(call)
                if exit_code:
                    return exit_code  # fleet stops at the first failing unit
            return _run_all(app, remote, global_, separate=bool(placed))


SHOW = ("systemctl", "show", "--no-pager")


def parse_properties(text: str) -> dict[str, str]:
    """``systemctl show``'s ``Key=Value`` lines (a value may itself hold ``=``)."""
    properties: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            properties[key] = value
    return properties


def _status_json(app: App, remote: Remote, calls: Sequence[Call]) -> int:
    """One object per (unit, machine): its systemd properties, or why there are none.
    Every call runs; the first non-zero exit status is the result."""
    import json

    items = []
    first = 0
    for call in calls:
        code, out = remote.capture(call)
        first = first or code
        item: dict[str, Any] = {
            "unit": call.argv[-1],
            "machine_id": call.machine_id,
            "machine_ip": call.address or None,
            "properties": parse_properties(out.decode(errors="replace")) if code == 0 else {},
        }
        if code:
            item["error"] = f"systemctl show exited with status {code}"
        items.append(item)
    app.write(json.dumps(items, indent=2) + "\n")
    return first


def _run_all(app: App, remote: Remote, calls: Sequence[Call], *, separate: bool) -> int:
    """Every call, even after a failure; the first non-zero status is the result."""
    first = 0
    for index, call in enumerate(calls):
        if index or separate:
            app.echo("")
        code = remote.run(call)
        first = first or code
    return first


# --- journal ----------------------------------------------------------------------------


@click.command("journal", help="Print the journal of a unit in the cluster to stdout.")
@click.argument("units", nargs=-1, metavar="UNIT")
@click.option(
    "--lines",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Number of recent lines.",
)
@click.option(
    "-f", "--follow", is_flag=True, help="Continuously print new entries as they are appended."
)
@ssh_port_option
@click.option("--sudo", is_flag=True, help="Execute journalctl with sudo.")
@click.option(
    "--output",
    default="short",
    show_default=True,
    help="Output mode, passed unaltered to journalctl on the machine.",
)
@pass_app
def journal(
    app: App,
    *,
    units: tuple[str, ...],
    lines: int,
    follow: bool,
    ssh_port: int,
    sudo: bool,
    output: str,
) -> int:
    from fleetctl.commands.targets import unit_args

    if len(units) != 1:
        raise FleetError("One unit file must be provided.")
    (target,) = unit_args(units)

    async def plan(client: FleetClient) -> Call:
        info = await client.get_unit(target.name)
        if info is None:
            raise FleetError(f"Unit {target.name} does not exist.")
        if info.is_global:
            raise FleetError(f"Unable to retrieve journal of global unit {target.name}.")
        if not is_placed(info) or not info.machine_id:
            raise FleetError(f"Unit {target.name} does not appear to be running.")
        machines = {m.id: m for m in await client.list_machines()}
        machine = machines.get(info.machine_id)
        argv = ["journalctl", "--unit", info.name, "--no-pager", "-n", str(lines)]
        argv += ["--output", output]
        if sudo:
            argv.insert(0, "sudo")
        if follow:
            argv.append("-f")
        return Call(info.machine_id, machine.public_ip if machine else "", tuple(argv))

    with app.session():
        call = app.run(plan)
        with Remote(app, ssh_port) as remote:
            try:
                return remote.run(call)
            except KeyboardInterrupt:
                if follow:
                    return 0  # Ctrl-C is how one stops following: not an error
                raise


COMMANDS = (status, journal, ssh)
