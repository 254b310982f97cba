"""Global flags: defaults, ``FLEETCTL_*`` env, Go-style booleans, deprecated aliases."""

from __future__ import annotations

from typing import Any

import click
import pytest

from fleetctl.cli import _settings, cli, go_bool_flag
from fleetctl.client import ClientSettings


def settings(args: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> ClientSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = cli.make_context("fleetctl", [*args, "version"])
    params: dict[str, Any] = dict(ctx.params)
    return _settings(ctx, params)


def test_defaults_are_fleets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings([], monkeypatch) == ClientSettings()


@pytest.mark.parametrize(
    ("args", "env", "field", "value"),
    [
        pytest.param(["--endpoint=http://a:1"], {}, "endpoint", "http://a:1", id="endpoint-flag"),
        pytest.param([], {"FLEETCTL_ENDPOINT": "http://b:2"}, "endpoint", "http://b:2", id="env"),
        pytest.param(
            ["--endpoint=http://a:1"],
            {"FLEETCTL_ENDPOINT": "http://b:2"},
            "endpoint",
            "http://a:1",
            id="flag-beats-env",
        ),
        pytest.param(["--driver=ETCD"], {}, "driver", "etcd", id="driver-any-case"),
        pytest.param([], {"FLEETCTL_DRIVER": "Etcd"}, "driver", "etcd", id="driver-env"),
        pytest.param(
            ["--strict-host-key-checking=false"],
            {},
            "strict_host_key_checking",
            False,
            id="go-bool-false",
        ),
        pytest.param(
            [],
            {"FLEETCTL_STRICT_HOST_KEY_CHECKING": "0"},
            "strict_host_key_checking",
            False,
            id="bool-env-0",
        ),
        pytest.param(["--debug"], {}, "debug", True, id="bare-bool-flag"),
        pytest.param([], {"FLEETCTL_DEBUG": "true"}, "debug", True, id="bool-env-true"),
        pytest.param(
            [], {"FLEETCTL_REQUEST_TIMEOUT": "0.5"}, "request_timeout", 0.5, id="float-env"
        ),
        pytest.param(
            [], {"FLEETCTL_TUNNEL": "bastion:2222"}, "tunnel", "bastion:2222", id="tunnel"
        ),
        pytest.param(["--ssh-username=me"], {}, "ssh_username", "me", id="ssh-username"),
        pytest.param(["--etcd-cafile=/ca.pem"], {}, "ca_file", "/ca.pem", id="deprecated-cafile"),
        pytest.param(
            ["--ca-file=/new.pem", "--etcd-cafile=/old.pem"],
            {},
            "ca_file",
            "/new.pem",
            id="new-tls-flag-wins",
        ),
        pytest.param(
            ["--experimental-api=false"],
            {},
            "endpoint",
            "http://127.0.0.1:2379,http://127.0.0.1:4001",
            id="experimental-api-false-legacy-endpoints",
        ),
        pytest.param(
            ["--experimental-api=false"], {}, "driver", "etcd", id="experimental-api-false-etcd"
        ),
    ],
)
def test_flag_and_env(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], field: str, value: object
) -> None:
    assert getattr(settings(args, monkeypatch, **env), field) == value


def test_bad_bool_env_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(click.BadParameter):
        settings([], monkeypatch, FLEETCTL_DEBUG="maybe")


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        pytest.param("--debug=false", "--no-debug", id="false"),
        pytest.param("--debug=0", "--no-debug", id="zero"),
        pytest.param("--debug=TRUE", "--debug", id="true-upper"),
        pytest.param("--strict-host-key-checking=F", "--no-strict-host-key-checking", id="F"),
        pytest.param("--endpoint=x=false", "--endpoint=x=false", id="not-a-bool-flag"),
        pytest.param("hello.service", "hello.service", id="argument"),
    ],
)
def test_go_bool_flag(arg: str, expected: str) -> None:
    assert go_bool_flag(arg) == expected


def test_go_bool_flag_rejects_other_values() -> None:
    with pytest.raises(click.UsageError, match='invalid argument "maybe" for "--debug" flag'):
        go_bool_flag("--debug=maybe")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--full=true"], ["--full"], id="true"),
        pytest.param(["--no-legend=false", "x"], ["x"], id="plain-flag-false-dropped"),
        pytest.param(["--fields=unit", "--full=0"], ["--fields=unit"], id="zero"),
        pytest.param(["--", "--full=true"], ["--", "--full=true"], id="after-dashes"),
    ],
)
def test_every_boolean_flag_takes_gos_value_form(argv: list[str], expected: list[str]) -> None:
    """Go's flag package: ``--flag=true|false`` for every boolean, on every command."""
    from fleetctl.cli import go_bool_flags

    assert go_bool_flags(argv, cli.commands["list-units"]) == expected


def test_go_forms_reach_the_command() -> None:
    from tests.fleetctl.support import run

    result = run("--driver=ETCD", "--endpoint=http://127.0.0.1:1", "list-units", "--full=maybe")
    assert (result.code, result.err) == (
        2,
        'Error: invalid argument "maybe" for "--full" flag (see \'fleetctl --help\')\n',
    )
