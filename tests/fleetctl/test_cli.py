"""fleetctl without a cluster: version, help, flags, env, prefix matching, drivers."""

from __future__ import annotations

import pytest

from fleet import __version__
from tests.fleetctl.support import run

VERSION_LINE = f"fleetctl version {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--version",), id="long-flag"),
        pytest.param(("-v",), id="short-flag"),
        pytest.param(("version",), id="command"),
        pytest.param(("vers",), id="command-prefix"),
    ],
)
def test_client_version_flag(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert (result.code, result.out, result.err) == (0, VERSION_LINE, "")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--help",), id="long-flag"),
        pytest.param(("-h",), id="short-flag"),
        pytest.param(("help",), id="command"),
        pytest.param((), id="no-arguments"),
    ],
)
def test_client_help_flag(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.code == 0
    assert result.out.startswith("Usage: fleetctl")
    for command in ("submit", "start", "list-unit-files", "list-machines", "destroy"):
        assert command in result.out


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("help",), id="command"),
        pytest.param(("--help",), id="long-flag"),
        pytest.param((), id="no-arguments"),
    ],
)
def test_client_version_help_output(args: tuple[str, ...]) -> None:
    """fleet's TestClientVersionHelpOutput: the help shows the version."""
    result = run(*args)
    assert result.code == 0
    assert f"Version: {__version__}\n" in result.out


def test_help_for_one_command() -> None:
    result = run("help", "list-unit-files")
    assert result.code == 0
    assert "--fields" in result.out
    assert "--no-legend" in result.out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(("--bogus", "list-units"), "No such option", id="unknown-global-flag"),
        pytest.param(("list-units", "--bogus"), "No such option", id="unknown-command-flag"),
        pytest.param(("no-such-command",), "No such command", id="unknown-command"),
        pytest.param(("list",), "ambiguous command", id="ambiguous-prefix"),
        pytest.param(("list-unit-files", "-l"), "No such option", id="no-short-full-on-unit-files"),
        pytest.param(("--driver=carrier-pigeon", "list-units"), "driver", id="unknown-driver"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], needle: str) -> None:
    result = run(*args)
    assert result.code == 2
    assert result.out == ""
    assert needle in result.err


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("verify", "hello.service"), id="verify"),
        pytest.param(("submit", "--sign", "hello.service"), id="submit-sign"),
        pytest.param(("start", "--sign", "hello.service"), id="start-sign"),
    ],
)
def test_signing_is_deprecated_exit_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.code == 2
    assert "DEPRECATED" in result.err


@pytest.mark.parametrize("command", ["submit", "load", "start", "stop", "unload", "destroy"])
def test_no_units_given_is_success(command: str) -> None:
    result = run("--driver=etcd", "--endpoint=http://127.0.0.1:1", command)
    assert (result.code, result.err) == (0, "No units given\n")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("cat",), id="none"),
        pytest.param(("cat", "a.service", "b.service"), id="two"),
    ],
)
def test_cat_wants_exactly_one_unit(args: tuple[str, ...]) -> None:
    result = run("--driver=etcd", "--endpoint=http://127.0.0.1:1", *args)
    assert (result.code, result.err) == (1, "One unit file must be provided\n")


@pytest.mark.parametrize(
    ("flag", "debug_lines"),
    [pytest.param("--debug", True, id="debug"), pytest.param("--debug=false", False, id="quiet")],
)
def test_debug_flag_logs_to_stderr(flag: str, debug_lines: bool) -> None:
    result = run(
        flag,
        "--driver=etcd",
        "--endpoint=http://127.0.0.1:1",
        "--request-timeout=0.5",
        "list-units",
    )
    assert result.code == 1
    assert (" DEBUG " in result.err) is debug_lines
    assert "cannot reach etcd at http://127.0.0.1:1" in result.err.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        pytest.param(
            ("status",), 1, "One or more units must be provided.", id="status-without-units"
        ),
        pytest.param(("journal",), 1, "One unit file must be provided.", id="journal-no-unit"),
        pytest.param(
            ("plan",),
            1,
            "Error: Missing argument 'UNITS...'. (see 'fleetctl plan --help')",
            id="plan-without-units",
        ),
        pytest.param(
            ("fd-forward",),
            1,
            "Error: Missing argument 'SOCKET'. (see 'fleetctl fd-forward --help')",
            id="fd-forward-without-socket",
        ),
        pytest.param(
            ("journal", "--lines", "-5", "hello.service"),
            2,
            "Error: Invalid value for '--lines': -5 is not in the range x>=0. "
            "(see 'fleetctl journal --help')",
            id="journal-negative-lines",
        ),
        pytest.param(
            ("--request-timeout", "-1", "list-units"),
            2,
            "Error: Invalid value for '--request-timeout': -1.0 is not in the range x>0. "
            "(see 'fleetctl --help')",
            id="negative-request-timeout",
        ),
        pytest.param(
            ("--bogus", "list-units"),
            2,
            "Error: No such option '--bogus'. (see 'fleetctl --help')",
            id="unknown-flag",
        ),
    ],
)
def test_argument_errors_are_one_line(args: tuple[str, ...], code: int, line: str) -> None:
    """A missing argument exits 1 on every command (fleet's own checks do); any
    other usage error exits 2."""
    result = run("--driver=etcd", "--endpoint=http://127.0.0.1:1", *args)
    assert (result.code, result.out, result.err) == (code, "", line + "\n")


def test_an_unknown_field_lists_the_valid_ones() -> None:
    result = run("--driver=etcd", "--endpoint=http://127.0.0.1:1", "list-units", "--fields", "foo")
    assert (result.code, result.err) == (
        1,
        'Invalid key in output format: "foo" (valid: unit, machine, load, active, sub, hash)\n',
    )
