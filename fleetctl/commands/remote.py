"""Commands that reach into machines: ssh, status, journal, fd-forward.

Each command first asks the cluster (through the one client, inside
:meth:`App.run`) where to go, then runs its command on that machine: locally
when the machine is this one (``/etc/machine-id``), otherwise over SSH to the
machine's public IP, hopping through the ``--tunnel`` bastion when one is set
(the same connection the client used). The remote part runs outside the event
loop so Ctrl-C ends ``journal -f`` at once, and its exit status becomes ours.
SSH failures (unknown or changed host key, authentication) are
:class:`~fleet.errors.SSHError` and reach the user as one message, exit 1.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from fleet.core.model import DesiredState
from fleet.errors import FleetError
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.model import Machine
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient
    from fleetctl.tunnel import SSHConnection

pass_app = click.make_pass_decorator(App)

MACHINE_ID_PATH = Path("/etc/machine-id")
DEFAULT_SSH_PORT = 22


def local_machine_id(path: Path = MACHINE_ID_PATH) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def trim_to_dashes(args: Sequence[str]) -> list[str]:
    """fleet's TrimToDashes: everything after the first ``--``, if there is one."""
    args = list(args)
    return args[args.index("--") + 1 :] if "--" in args else args


# --- where to run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One command to run on one machine (``address`` is its public IP, "" if unknown)."""

    machine_id: str
    address: str
    argv: tuple[str, ...]


class LookupFailed(FleetError):
    """A machine or unit argument does not lead to a machine."""


async def machine_by_prefix(client: FleetClient, prefix: str) -> Machine:
    """fleet's findAddressInMachineList: the one live machine whose id starts with ``prefix``."""
    found = [m for m in await client.list_machines() if m.id.startswith(prefix)]
    if len(found) > 1:
        raise LookupFailed("found more than one machine")
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


async def _ok(lookup: Awaitable[Machine | None]) -> Machine | None:
    try:
        return await lookup
    except LookupFailed:
        return None


async def resolve_ssh_target(
    client: FleetClient, *, machine: str | None, unit: str | None, target: str | None
) -> Machine | None:
    if machine:
        return await machine_by_prefix(client, machine)
    if unit:
        return await machine_of_unit(client, unit)
    if target is None:
        raise LookupFailed("one machine or unit must be provided")
    by_machine = await _ok(machine_by_prefix(client, target))
    by_unit = await _ok(machine_of_unit(client, target))
    if by_machine is not None and by_unit is not None:
        raise LookupFailed(
            f"ambiguous argument, both machine and unit found for `{target}`.\n"
            "Please use flag `-m` or `-u` to refine the search"
        )
    if by_machine is None and by_unit is None:
        raise LookupFailed("could not find matching unit or machine")
    return by_machine or by_unit


async def global_unit_calls(
    client: FleetClient, name: str, argv: tuple[str, ...], machines: dict[str, Machine]
) -> list[Call]:
    """``argv`` on every machine that publishes a state for global unit ``name``."""
    states = await client.list_unit_states(unit_name=name)
    ids = sorted({state.machine_id for state in states})
    return [Call(mid, machines[mid].public_ip if mid in machines else "", argv) for mid in ids]


# --- how to run -------------------------------------------------------------------------


class _TextSink:
    """Bytes written to a text stream that has no binary buffer (tests, wrappers)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode(errors="replace"))

    def flush(self) -> None:
        self._stream.flush()


def _binary(stream: IO[str]) -> Any:
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else _TextSink(stream)


class Remote:
    """Runs commands on machines; one SSH connection per machine per invocation."""

    def __init__(self, app: App, ssh_port: int = DEFAULT_SSH_PORT) -> None:
        self.app = app
        self.ssh_port = ssh_port
        self.local_id = local_machine_id()
        self._conns: dict[str, SSHConnection] = {}

    def connect(self, address: str) -> SSHConnection:
        from fleetctl import tunnel

        target = tunnel.join_host_port(address, self.ssh_port)
        if target not in self._conns:
            self._conns[target] = tunnel.SSHConnection.open(
                target, tunnel.ssh_settings(self.app.settings), via=self.app.tunnel()
            )
        return self._conns[target]

    def run_ssh(
        self, address: str, command: str, *, forward_agent: bool = False, pty: bool = False
    ) -> int:
        conn = self.connect(address)
        return conn.run(
            command,
            forward_agent=forward_agent,
            pty=pty,
            stdout=_binary(self.app.out),
            stderr=_binary(self.app.err),
        )

    def run(self, call: Call) -> int:
        if self.local_id and call.machine_id == self.local_id:
            return self._run_local(call.argv)
        if not call.address:
            raise FleetError(f"Error getting machine IP: machine {call.machine_id} is not known")
        return self.run_ssh(call.address, shlex.join(call.argv))

    def _run_local(self, argv: Sequence[str]) -> int:
        self.app.out.flush()
        self.app.err.flush()
        try:
            done = subprocess.run(
                argv, check=False, stdout=_fd(self.app.out), stderr=_fd(self.app.err)
            )
        except OSError as exc:
            raise FleetError(f"Error running local command: {exc}") from exc
        return done.returncode

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fd(stream: IO[str]) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


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


def is_placed(info: UnitInfo) -> bool:
    """Whether the unit is on a machine (a current state above inactive)."""
    return info.current is not None and info.current is not DesiredState.INACTIVE


@click.command("status", help="Output the status of one or more units in the cluster.")
@click.argument("units", nargs=-1)
@ssh_port_option
# fleet's functional tests run `status --no-block`: accepted and ignored.
@click.option("--block-attempts", type=int, hidden=True, expose_value=False)
@click.option("--no-block", is_flag=True, hidden=True, expose_value=False)
@pass_app
def status(app: App, units: tuple[str, ...], ssh_port: int) -> int:
    from fleetctl.commands.targets import unit_args

    targets = unit_args(units)

    async def plan(client: FleetClient) -> tuple[list[Call], list[Call]]:
        machines = {m.id: m for m in await client.list_machines()}
        placed: list[Call] = []
        global_: list[Call] = []
        for target in targets:
            info = await client.get_unit(target.name)
            if info is None:
                raise FleetError(f"Unit {target.name} does not exist.")
            if info.is_global:
                argv = ("systemctl", "status", info.name)
                global_ += await global_unit_calls(client, info.name, argv, machines)
                continue
            if not is_placed(info) or not info.machine_id:
                raise FleetError(f"Unit {target.name} does not appear to be loaded.")
            machine = machines.get(info.machine_id)
            address = machine.public_ip if machine else ""
            placed.append(Call(info.machine_id, address, ("systemctl", "status", "-l", info.name)))
        return placed, global_

    with app.session():
        placed, global_ = app.run(plan)
        exit_code = 0
        with Remote(app, ssh_port) as remote:
            for index, call in enumerate(placed):
                if index:
                    app.echo("")  # systemctl's own separator between units
                exit_code = remote.run(call)
                if exit_code:
                    return exit_code  # fleet stops at the first failing unit
            return _run_all(app, remote, global_, separate=bool(placed))


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
@click.option("--lines", type=int, default=10, show_default=True, help="Number of recent lines.")
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
            return remote.run(call)


# --- fd-forward -------------------------------------------------------------------------


@click.command(
    "fd-forward",
    help="Proxy stdin and stdout to a unix domain socket (used on the far side of --tunnel).",
)
@click.argument("socket_path", metavar="SOCKET")
def fd_forward(socket_path: str) -> int:
    from fleetctl.fdforward import fd_forward as forward

    sys.stdout.flush()
    forward(socket_path)
    return 0


COMMANDS = (status, journal, ssh, fd_forward)
