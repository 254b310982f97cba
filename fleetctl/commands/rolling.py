"""``start --replace --max-parallel N`` and ``rolling-restart``: the rolling commands (B6).

Both turn their arguments (names, or globs such as ``web@*`` matched against
the cluster's units) into :class:`~fleetctl.rolling.Step` s, check them all
before the first write, and hand them to :class:`~fleetctl.rolling.Roller`.
A rolling *replace* of a global unit is refused (one content serves every
machine); a rolling *restart* of one restarts it machine by machine with
``systemctl restart`` over fleetctl's SSH. Exit 0 when every step became
healthy, 1 when one failed, 130 after Ctrl-C.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from fleet.core.model import DesiredState
from fleet.errors import InvalidInput
from fleetctl.commands.remote import ssh_port_option
from fleetctl.context import App

if TYPE_CHECKING:
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient
    from fleetctl.rolling import RollSettings, Step

pass_app = click.make_pass_decorator(App)
GLOB_CHARS = frozenset("*?[")
EXIT_INTERRUPTED = 130
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class Duration(click.ParamType[float]):
    """Seconds, or a number with ``ms``, ``s``, ``m`` or ``h`` (``1s``, ``500ms``, ``2m``)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        match = _DURATION.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration (like 5s, 500ms, 2m)", param, ctx)
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def rolling_options(
    *, parallel_default: int | None, failure_modes: Sequence[str]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--on-failure",
            type=click.Choice(list(failure_modes)),
            default="pause",
            show_default=True,
            help="At the first unit that does not become healthy: stop there (pause), "
            "go on with the rest (continue)"
            + (
                ", or put back the previous content of every unit changed (rollback)."
                if "rollback" in failure_modes
                else "."
            ),
        )(func)
        func = click.option(
            "--healthy-timeout",
            type=Duration(),
            default="120s",
            show_default=True,
            help="How long one step may take to become healthy before it counts as failed.",
        )(func)
        func = click.option(
            "--min-healthy-time",
            type=Duration(),
            default="5s",
            show_default=True,
            help="How long a unit must stay active on its machine to count as healthy.",
        )(func)
        return click.option(
            "--max-parallel",
            type=click.IntRange(min=1),
            default=parallel_default,
            show_default=parallel_default is not None,
            help="Roll N units (or machines of a global unit) at a time, each waited until "
            "healthy before the next"
            + ("; with --replace only." if parallel_default is None else "."),
        )(func)

    return decorate


def roll_settings(
    max_parallel: int, min_healthy_time: float, healthy_timeout: float, on_failure: str
) -> RollSettings:
    from fleetctl.rolling import OnFailure, RollSettings

    return RollSettings(max_parallel, min_healthy_time, healthy_timeout, OnFailure(on_failure))


def expand_globs(args: Sequence[str], names: Sequence[str]) -> list[str]:
    """Arguments with ``*?[`` become the registry units (templates excepted) they
    match, kept in the argument's directory (its local template is found there)."""
    from fleet.core.globs import glob_match
    from fleet.core.names import UnitName, mangle_unit_name

    out: list[str] = []
    for arg in args:
        base = os.path.basename(arg)
        if not GLOB_CHARS & set(base):
            out.append(arg)
            continue
        pattern = mangle_unit_name(base)
        found = [n for n in names if glob_match(pattern, n) and not UnitName.parse(n).is_template]
        if not found:
            raise InvalidInput(f"no unit in the cluster matches {arg!r}")
        out += [os.path.join(os.path.dirname(arg), n) for n in found]
    return out


async def _targets(client: FleetClient, units: Sequence[str]) -> list[str]:
    from fleetctl.commands.targets import unit_args

    if any(GLOB_CHARS & set(os.path.basename(u)) for u in units):
        names = [info.name for info in await client.list_units()]
        units = expand_globs(units, names)
    return [t.arg for t in unit_args(units)]


def _global_refusal(name: str) -> InvalidInput:
    return InvalidInput(
        f"cannot roll out new content of global unit {name}: one content serves every "
        "machine (use fleetctl start --replace without --max-parallel; fleetctl "
        "rolling-restart restarts it machine by machine)"
    )


async def replace_steps(app: App, client: FleetClient, units: Sequence[str]) -> list[Step]:
    """What ``start --replace`` would change, checked whole before any write."""
    from fleet.core.names import check_activation
    from fleet.core.views import unit_is_global
    from fleetctl.commands.targets import check_unit, local_unit, unit_args, unit_source
    from fleetctl.rolling import Step

    steps: list[Step] = []
    for target in unit_args(await _targets(client, units)):
        check_activation(target.name, DesiredState.LAUNCHED)
        existing = await client.get_unit(target.name)
        if existing is not None and existing.is_global:
            raise _global_refusal(target.name)
        if existing is None:
            unit = await unit_source(client, target)
        else:
            local = local_unit(target)
            if local is None:
                raise InvalidInput(
                    f"unable to find local unit file {target.path} to replace Unit({target.name})"
                )
            unit = local[0]
        if unit_is_global(target.name, unit):
            raise _global_refusal(target.name)
        check_unit(app, target.name, unit)
        if existing is not None and existing.hash == unit.hash:
            if existing.current is DesiredState.LAUNCHED:
                app.echo(f"Unit {target.name} unchanged, skipped")
                continue
            steps.append(Step(target.name, old=existing))  # unchanged: only started
        else:
            steps.append(Step(target.name, old=existing, new=unit))
    return steps


async def restart_steps(app: App, client: FleetClient, units: Sequence[str]) -> list[Step]:
    """One step per placed unit, one per machine running a global unit."""
    from fleetctl.commands.targets import unit_args
    from fleetctl.rolling import Step
    from fleetctl.targets import is_placed

    infos: list[UnitInfo] = []
    for target in unit_args(await _targets(client, units)):
        info = await client.get_unit(target.name)
        if info is None:
            raise InvalidInput(f"unable to find unit {target.name}")
        infos.append(info)
    steps: list[Step] = []
    for info in infos:
        if info.is_global:
            states = await client.list_unit_states(unit_name=info.name)
            machines = sorted({state.machine_id for state in states})
            if not machines:
                app.warn(f"Global unit {info.name} runs on no machine, skipped")
            steps += [Step(info.name, old=info, machine_id=m) for m in machines]
        elif not is_placed(info):
            app.warn(f"Unable to restart unit {info.name} in state inactive")
        else:
            steps.append(Step(info.name, old=info))
    return steps


def run_rolling(
    app: App,
    settings: RollSettings,
    plan: Callable[[App, FleetClient], Any],
    *,
    replacing: bool,
    ssh_port: int = 22,
) -> int:
    """Plan the steps, roll them, print the summary; the exit code."""
    import asyncio
    import signal

    from fleetctl.rolling import OnFailure, Roller, Unhealthy, summary
    from fleetctl.runner import Remote
    from fleetctl.targets import Call

    verb = "new content" if replacing else "restarted"

    with app.session(), Remote(app, ssh_port) as remote:
        machines: dict[str, str] = {}

        async def restart_on_machine(step: Step) -> None:
            assert step.machine_id is not None
            call = Call(step.machine_id, machines.get(step.machine_id, ""),
                        ("systemctl", "restart", step.name))  # fmt: skip
            try:
                code = await asyncio.to_thread(remote.run, call)
            except Exception as exc:  # SSH trouble is this step's failure
                raise Unhealthy(str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc
            if code != 0:
                raise Unhealthy(f"systemctl restart {step.name} exited with status {code}")

        async def body(client: FleetClient) -> int:
            steps: list[Step] = await plan(app, client)
            if not steps:
                app.echo("Nothing to do")
                return 0
            machines.update({m.id: m.public_ip for m in await client.list_machines()})
            roller = Roller(client, app.clock(), app.echo, app.warn, settings, restart_on_machine)
            loop = asyncio.get_running_loop()

            def interrupted() -> None:
                app.warn("Interrupted: stopping once the step in flight is written")
                roller.stop.set()
                loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C ends at once

            loop.add_signal_handler(signal.SIGINT, interrupted)
            app.echo(
                f"Rolling {len(steps)} step(s), {settings.max_parallel} at a time; healthy = "
                f"active for {settings.min_healthy:g}s, within {settings.healthy_timeout:g}s"
            )
            try:
                ok = await roller.run(steps, verb)
            finally:
                loop.remove_signal_handler(signal.SIGINT)
            for line in summary(steps, replacing):
                app.echo(line)
            if roller.interrupted:
                app.warn("Interrupted: units in flight keep their desired state")
                return EXIT_INTERRUPTED
            if not ok:
                then = {
                    OnFailure.PAUSE: "stopped at the first failure; the rest were not touched",
                    OnFailure.CONTINUE: "went on after failures",
                    OnFailure.ROLLBACK: "rolled back the units it changed",
                }[settings.on_failure]
                app.warn(f"Rolling run failed (--on-failure {settings.on_failure}): {then}")
                return 1
            return 0

        return app.run(body, loop=True)  # signal handlers and gathers need a loop


def rolling_replace(app: App, units: Sequence[str], settings: RollSettings) -> int:
    """``start --replace --max-parallel N``."""
    if not units:
        app.warn("No units given")
        return 0

    async def plan(app: App, client: FleetClient) -> list[Step]:
        return await replace_steps(app, client, units)

    return run_rolling(app, settings, plan, replacing=True)


@click.command(
    "rolling-restart",
    help="Restart units N at a time, each waited until healthy before the next. UNIT may be "
    "a glob such as 'web@*' (matched against the cluster's units). A global unit is "
    "restarted machine by machine with systemctl over SSH.",
)
@click.argument("units", nargs=-1)
@rolling_options(parallel_default=1, failure_modes=("pause", "continue"))
@ssh_port_option
@pass_app
def rolling_restart(
    app: App,
    *,
    units: tuple[str, ...],
    max_parallel: int,
    min_healthy_time: float,
    healthy_timeout: float,
    on_failure: str,
    ssh_port: int,
) -> int:
    if not units:
        app.warn("No units given")
        return 0
    settings = roll_settings(max_parallel, min_healthy_time, healthy_timeout, on_failure)

    async def plan(app: App, client: FleetClient) -> list[Step]:
        return await restart_steps(app, client, units)

    return run_rolling(app, settings, plan, replacing=False, ssh_port=ssh_port)


COMMANDS = (rolling_restart,)
