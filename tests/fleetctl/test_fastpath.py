"""The click-free list path makes exactly what click makes of a command line, or declines.

Every case is parsed by :func:`fleetctl.fastpath.parse` and by the real click
CLI (global flags, environment, the command's own flags); when the fast path
takes a command line, settings, command and flags must be click's, and the
plain forms scripts use must be taken.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import click
import pytest

from fleetctl import fastpath
from fleetctl.cli import _settings, cli

SOCK = "unix:///tmp/x.sock"

TAKEN = [
    ("list-units",),
    ("list-machines",),
    ("list-unit-files",),
    (f"--endpoint={SOCK}", "list-units", "--no-legend"),
    ("--endpoint", SOCK, "list-units", "-l", "--fields", "unit,hash"),
    ("--endpoint=http://10.0.0.1:49153", "list-machines", "--full", "--no-legend"),
    ("list-unit-files", "--fields=unit,desc", "--output=json"),
    ("list-units", "-o", "JSON"),
    ("list-units", "--output", "table", "--fields="),
    ("--endpoint=", "list-units"),
    ("--endpoint=a", "--endpoint=b", "list-units", "--fields=a", "--fields=unit"),
    ("list-units", "--fields", "-x"),
]
DECLINED = [
    ("list-u",),  # prefixes: click's
    ("--driver=etcd", "list-units"),
    ("--endpoint",),
    ("list-units", "--fields"),
    ("list-unit-files", "-l"),
    ("list-units", "-ojson"),
    ("list-units", "-o=json"),
    ("list-units", "-o", "yaml"),
    ("list-units", "--no-legend=true"),
    ("list-units", "extra"),
    ("list-units", "--"),
    ("list-units", "--help"),
    ("list-units", "--endpoint=x"),
    ("--debug", "list-machines"),
    ("version",),
    (),
]


def click_parse(args: tuple[str, ...]) -> fastpath.Parsed:
    """What the click CLI makes of ``args`` (global flags, then the command's)."""
    ctx = cli.make_context("fleetctl", list(args))
    settings = _settings(ctx, ctx.params)
    assert isinstance(cli, click.Group)
    # As Group.invoke does (ctx.protected_args is deprecated).
    name, command, rest = cli.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
    assert name is not None
    assert command is not None
    sub = command.make_context(name, rest, parent=ctx)
    p = sub.params
    return fastpath.Parsed(settings, name, p["fields"], p["full"], p["no_legend"], p["output"])


@pytest.mark.parametrize("env", [{}, {"FLEETCTL_ENDPOINT": "unix:///run/env.sock"}])
@pytest.mark.parametrize("args", TAKEN, ids=" ".join)
def test_plain_list_commands_are_taken_as_click_takes_them(
    args: tuple[str, ...], env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("FLEETCTL_")]:
        monkeypatch.delenv(key)
    for key in env:
        monkeypatch.setenv(key, env[key])
    parsed = fastpath.parse(args, env)
    assert parsed is not None
    assert parsed == click_parse(args)


@pytest.mark.parametrize("args", DECLINED, ids=" ".join)
def test_anything_else_is_left_to_click(args: tuple[str, ...]) -> None:
    assert fastpath.parse(args, {}) is None


@pytest.mark.parametrize(
    "env",
    [{"FLEETCTL_DRIVER": "etcd"}, {"FLEETCTL_DEBUG": "1"}, {"FLEETCTL_TUNNEL": "h"}],
    ids=str,
)
def test_other_fleetctl_variables_are_left_to_click(env: Mapping[str, str]) -> None:
    assert fastpath.parse(("list-units",), env) is None
