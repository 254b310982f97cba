"""Commands about fleetctl itself: version, help, and the deprecated verify."""

from __future__ import annotations

import click

from fleet import __version__
from fleetctl.commands.units import SIGN_DEPRECATED
from fleetctl.context import App

pass_app = click.make_pass_decorator(App)


@click.command("version", help="Print the version and exit.")
def version() -> int:
    click.echo(f"fleetctl version {__version__}")
    return 0


@click.command("help", help="Show help for fleetctl or one of its commands.")
@click.argument("command", required=False)
@click.pass_context
def help_(ctx: click.Context, command: str | None) -> int:
    root = ctx.find_root()
    group = root.command
    if command and isinstance(group, click.Group):
        sub = group.get_command(root, command)
        if sub is None:
            raise click.UsageError(f"unknown command {command!r}", ctx)
        with click.Context(sub, info_name=sub.name, parent=root) as sub_ctx:
            click.echo(sub.get_help(sub_ctx))
        return 0
    click.echo(root.get_help())
    return 0


@click.command("verify", hidden=True, help="DEPRECATED: unit signing is not supported.")
@click.argument("units", nargs=-1)
@pass_app
def verify(app: App, units: tuple[str, ...]) -> int:
    app.warn(SIGN_DEPRECATED)
    return 2


COMMANDS = (version, help_, verify)
