"""fleetctl's entry point: the click group, its global flags and the one error handler.

Global flags follow fleet (each can also come from ``FLEETCTL_<FLAG>``); the
resolved values become one :class:`~fleetctl.client.ClientSettings` inside the
:class:`~fleetctl.context.App` that click passes to every command. Unambiguous
prefixes of subcommands work (``fleetctl list-m``). :func:`main` is the only
place that turns a :class:`~fleet.errors.FleetError` into one line on stderr
and an exit code. Only click is imported at start-up; everything heavier is
imported by the commands that need it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from fleet import __version__
from fleet.errors import FleetError
from fleet.registry.keys import DEFAULT_PREFIX
from fleetctl.client import DEFAULT_ENDPOINT, LEGACY_ETCD_ENDPOINTS, ClientSettings
from fleetctl.commands import (
    completion,
    fdforward,
    lists,
    maintenance,
    meta,
    plan,
    remote,
    restart,
    teardown,
    units,
)
from fleetctl.commands import events as events_commands
from fleetctl.commands import metadata as metadata_commands
from fleetctl.commands import rolling as rolling_commands
from fleetctl.commands import ui as ui_commands
from fleetctl.context import App

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class PrefixGroup(click.Group):
    """A group that also accepts any unambiguous prefix of a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Global flags come before the command; what follows is the command's
        # (resolve_command rewrites those), and for ssh partly a remote command.
        split = _command_index(self, args)
        return super().parse_args(ctx, go_bool_flags(args[:split], self) + args[split:])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        matches = sorted(name for name in self.list_commands(ctx) if name.startswith(cmd_name))
        if len(matches) > 1:
            ctx.fail(f"ambiguous command {cmd_name!r}: could be {', '.join(matches)}")
        return super().get_command(ctx, matches[0]) if matches else None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            # ssh takes no flags after its target: the rest is the remote command.
            interspersed = command.context_settings.get("allow_interspersed_args", True)
            split = len(rest) if interspersed else _command_index(command, rest)
            rest = go_bool_flags(rest[:split], command) + rest[split:]
        return (command.name if command else None), command, rest


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"fleetctl version {__version__}")
        ctx.exit(0)


def _env(flag: str) -> str:
    return "FLEETCTL_" + flag.upper().replace("-", "_")


def _bool_option(flag: str, default: bool, help_text: str, **extra: Any) -> Decorator:
    return click.option(
        f"--{flag}/--no-{flag}",
        default=default,
        envvar=_env(flag),
        show_default=True,
        help=help_text,
        **extra,
    )


_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _bool_flags(command: click.Command) -> dict[str, str | None]:
    """``--name`` of each boolean flag of ``command`` -> what ``--name=false`` becomes:
    its ``--no-name`` twin, or None (a plain flag: leave it out)."""
    flags: dict[str, str | None] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.is_flag and not param.count:
            off = next((o for o in param.secondary_opts if o.startswith("--")), None)
            for opt in param.opts:
                if opt.startswith("--"):
                    flags[opt] = off
    return flags


def go_bool_flag(arg: str, command: click.Command | None = None) -> str | None:
    """Go's flag package accepts ``--flag=true|false`` for every boolean: rewrite it
    into click's ``--flag`` / ``--no-flag`` (None: the flag is off, drop it), so
    scripts written for Go fleetctl keep working while a bare ``--flag`` never
    swallows the next argument. ``command`` defaults to fleetctl's own group."""
    if not arg.startswith("--") or "=" not in arg:
        return arg
    name, _, value = arg.partition("=")
    flags = _bool_flags(command if command is not None else cli)
    if name not in flags:
        return arg
    if value in _GO_TRUE:
        return name
    if value in _GO_FALSE:
        return flags[name]
    raise click.UsageError(f'invalid argument "{value}" for "{name}" flag')


def _command_index(group: click.Command, args: list[str]) -> int:
    """Where the subcommand's name is in ``args`` (len(args) if there is none)."""
    takes_value = {
        opt
        for param in group.params
        if isinstance(param, click.Option) and not param.is_flag
        for opt in param.opts
    }
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--" or not arg.startswith("-"):
            return index
        index += 2 if arg in takes_value else 1
    return index


def go_bool_flags(args: list[str], command: click.Command) -> list[str]:
    """:func:`go_bool_flag` over the arguments up to ``--`` (after it, nothing is a flag)."""
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            return out + args[index:]
        rewritten = go_bool_flag(arg, command)
        if rewritten is not None:
            out.append(rewritten)
    return out


def _str_option(flag: str, default: str | None, help_text: str, **extra: Any) -> Decorator:
    return click.option(
        f"--{flag}",
        default=default,
        envvar=_env(flag),
        show_default=bool(default),
        help=help_text,
        **extra,
    )


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(
    cls=PrefixGroup,
    invoke_without_command=True,
    context_settings=CONTEXT_SETTINGS,
    help="fleetctl is a command-line interface to fleet, the cluster-wide systemd scheduler.",
    # fleet's help ends with its version (TestClientVersionHelpOutput).
    epilog=f"Version: {__version__}",
)
@click.option(
    "--version",
    "-v",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and exit.",
)
@_str_option(
    "endpoint",
    None,
    f"Location of the fleet API (default {DEFAULT_ENDPOINT}); with --driver=etcd, "
    "a comma-separated list of etcd endpoints.",
)
@click.option(
    "--driver",
    type=click.Choice(["api", "etcd"], case_sensitive=False),
    default="api",
    envvar=_env("driver"),
    show_default=True,
    help="How to reach the cluster: the fleet API, or etcd directly.",
)
@_str_option("tunnel", "", "Establish an SSH tunnel through host[:port] for all traffic.")
@_str_option("ssh-username", "core", "Username to use when connecting to CoreOS instances.")
@click.option(
    "--ssh-timeout",
    type=float,
    default=10.0,
    envvar=_env("ssh-timeout"),
    show_default=True,
    help="Seconds to wait for SSH connection set-up.",
)
@_str_option(
    "known-hosts-file",
    "~/.fleetctl/known_hosts",
    "File used to store remote machine fingerprints. Ignored if strict host key checking is off.",
)
@_bool_option("strict-host-key-checking", True, "Verify host keys presented by remote machines.")
@click.option(
    "--ssh-identity-file",
    multiple=True,
    type=click.Path(dir_okay=False),
    envvar=_env("ssh-identity-file"),
    help="Private key for SSH, tried after the ssh-agent's keys (repeatable; in the "
    "environment a colon-separated list). Default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    envvar=_env("request-timeout"),
    show_default=True,
    help="Seconds to wait for each request to the API or etcd.",
)
@_str_option("ca-file", "", "Certificate authority file for TLS to the API or etcd.")
@_str_option("cert-file", "", "Client certificate file for TLS.")
@_str_option("key-file", "", "Client key file for TLS.")
@_str_option("etcd-cafile", "", "DEPRECATED: use --ca-file.", hidden=True)
@_str_option("etcd-certfile", "", "DEPRECATED: use --cert-file.", hidden=True)
@_str_option("etcd-keyfile", "", "DEPRECATED: use --key-file.", hidden=True)
@_str_option(
    "etcd-key-prefix",
    DEFAULT_PREFIX,
    "Keyspace for fleet data in etcd (development use only!).",
)
@_bool_option("debug", False, "Print out more debug information to stderr.")
@_bool_option(
    "experimental-api",
    True,
    "DEPRECATED: =false forces --driver=etcd.",
    hidden=True,
)
@click.pass_context
def cli(ctx: click.Context, /, **flags: Any) -> int:
    """fleetctl: manage units on a fleet cluster."""
    app = App(settings=_settings(ctx, flags))
    if app.settings.debug:
        # Every layer logs through `logging`; --debug shows it, with fleet's timestamps.
        import logging

        logging.basicConfig(
            level=logging.DEBUG,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    ctx.obj = app
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
    return 0


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _settings(ctx: click.Context, flags: dict[str, Any]) -> ClientSettings:
    warn = sys.stderr
    endpoint = flags["endpoint"] or DEFAULT_ENDPOINT
    driver = str(flags["driver"]).lower()
    tls = {}
    deprecated = (
        ("ca_file", "etcd_cafile"),
        ("cert_file", "etcd_certfile"),
        ("key_file", "etcd_keyfile"),
    )
    for new, old in deprecated:
        tls[new] = flags[new]
        if _given(ctx, old):
            print(
                f"WARNING: --{old.replace('_', '-')} is deprecated, use --{new.replace('_', '-')}",
                file=warn,
            )
            tls[new] = flags[new] or flags[old]
    if _given(ctx, "experimental_api"):
        print("WARNING: --experimental-api is deprecated", file=warn)
        if not flags["experimental_api"]:
            driver = "etcd"
            if not flags["endpoint"]:
                endpoint = LEGACY_ETCD_ENDPOINTS
    return ClientSettings(
        endpoint=endpoint,
        driver=driver,
        tunnel=flags["tunnel"],
        ssh_username=flags["ssh_username"],
        ssh_timeout=flags["ssh_timeout"],
        known_hosts_file=flags["known_hosts_file"],
        strict_host_key_checking=flags["strict_host_key_checking"],
        ssh_identity_files=tuple(flags["ssh_identity_file"]),
        request_timeout=flags["request_timeout"],
        etcd_key_prefix=flags["etcd_key_prefix"],
        debug=flags["debug"],
        **tls,
    )


for _command in (
    *units.COMMANDS,
    *teardown.COMMANDS,
    *lists.COMMANDS,
    *plan.COMMANDS,
    *remote.COMMANDS,
    *restart.COMMANDS,
    *maintenance.COMMANDS,
    *events_commands.COMMANDS,
    *fdforward.COMMANDS,
    *meta.COMMANDS,
    *metadata_commands.COMMANDS,
    *ui_commands.COMMANDS,
    *rolling_commands.COMMANDS,
    *completion.COMMANDS,
):
    cli.add_command(_command)


settings_of = _settings  # for fleetctl.completion: the global flags it was given


def main(argv: Sequence[str] | None = None) -> int:
    """Run fleetctl; returns the process exit code."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="fleetctl",
            standalone_mode=False,
        )
    except click.UsageError as exc:
        # One line, like every other error: what is wrong, and where help is. A
        # missing argument exits 1, as fleet's own argument checks do ("One unit
        # file must be provided"); any other usage error exits 2.
        where = exc.ctx.command_path if exc.ctx is not None else "fleetctl"
        print(f"Error: {exc.format_message()} (see '{where} --help')", file=sys.stderr)
        return 1 if isinstance(exc, click.MissingParameter) else exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        print("Aborted!", file=sys.stderr)
        return 1
    except FleetError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0
