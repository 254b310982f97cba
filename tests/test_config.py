"""fleetd configuration: file format, env overrides, defaults and every refusal."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

from fleet.config import _PARSERS, FleetConfig, load_config, parse_go_duration
from fleet.errors import InvalidConfig


def _load(tmp_path: Path, text: str | None, env: dict[str, str] | None = None) -> Any:
    path: str | None = None
    if text is not None:
        conf = tmp_path / "fleet.conf"
        conf.write_text(text)
        path = str(conf)
    return load_config(path, env or {})


def test_defaults_when_the_default_file_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fleet.config.DEFAULT_CONFIG_PATH", "/nonexistent/fleet.conf")
    config, warnings = load_config(None, {})
    assert config == FleetConfig()
    assert warnings == []
    assert config.etcd_servers == ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
    assert config.etcd_key_prefix == "/_coreos.com/fleet/"
    assert config.agent_ttl == 30.0
    assert config.engine_lease_ttl == 10.0
    assert config.shutdown_stops_units is False


def test_every_option_has_a_parser() -> None:
    assert set(_PARSERS) == {f.name for f in fields(FleetConfig)}


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    expected: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


ACCEPTED = [
    Case("empty file", "", {}),
    Case("comments and blank lines", "# c\n; c\n\n  # indented\n", {}),
    Case("verbosity", "verbosity=2", {"verbosity": 2}),
    Case("spaces around =", "  verbosity =  3 ", {"verbosity": 3}),
    Case("last duplicate wins", "verbosity=1\nverbosity=4", {"verbosity": 4}),
    Case(
        "servers comma list",
        "etcd_servers=http://a:1,http://b:2",
        {"etcd_servers": ("http://a:1", "http://b:2")},
    ),
    Case(
        "servers json-ish list",
        'etcd_servers=["http://a:1", "http://b:2"]',
        {"etcd_servers": ("http://a:1", "http://b:2")},
    ),
    Case(
        "servers https single",
        "etcd_servers=https://etcd.example:2379",
        {"etcd_servers": ("https://etcd.example:2379",)},
    ),
    Case(
        "metadata pairs trimmed",
        "metadata= region = us-west , disk=ssd ",
        {"metadata": {"region": "us-west", "disk": "ssd"}},
    ),
    Case("metadata quoted", 'metadata="region=us,az=b"', {"metadata": {"region": "us", "az": "b"}}),
    Case("metadata last duplicate wins", "metadata=a=1,a=2", {"metadata": {"a": "2"}}),
    Case("metadata value with =", "metadata=k=a=b", {"metadata": {"k": "a=b"}}),
    Case("metadata empty", "metadata=", {"metadata": {}}),
    Case("agent_ttl seconds", "agent_ttl=45s", {"agent_ttl": 45.0}),
    Case("agent_ttl compound", "agent_ttl=1m30s", {"agent_ttl": 90.0}),
    Case("agent_ttl millis", "agent_ttl=500ms", {"agent_ttl": 0.5}),
    Case("agent_ttl fractional hour", "agent_ttl=1.5h", {"agent_ttl": 5400.0}),
    Case(
        "float intervals",
        "engine_reconcile_interval=8\netcd_request_timeout=3.5",
        {"engine_reconcile_interval": 8.0, "etcd_request_timeout": 3.5},
    ),
    Case(
        "go booleans",
        "disable_engine=1\ndisable_watches=True\nsystemd_user=t",
        {"disable_engine": True, "disable_watches": True, "systemd_user": True},
    ),
    Case("false boolean", "shutdown_stops_units=false", {"shutdown_stops_units": False}),
    Case("restore purge on shutdown", "shutdown_stops_units=true", {"shutdown_stops_units": True}),
    Case("public ip v4", "public_ip=10.0.0.5", {"public_ip": "10.0.0.5"}),
    Case("public ip v6", "public_ip=fd00::1", {"public_ip": "fd00::1"}),
    Case("quoted string value", 'etcd_key_prefix="/custom/"', {"etcd_key_prefix": "/custom/"}),
    Case("token limit", "token_limit=250", {"token_limit": 250}),
    Case(
        "tls pair",
        "etcd_certfile=/c.pem\netcd_keyfile=/k.pem\netcd_cafile=/ca.pem",
        {"etcd_certfile": "/c.pem", "etcd_keyfile": "/k.pem", "etcd_cafile": "/ca.pem"},
    ),
    Case(
        "api listen list",
        "api_listen=127.0.0.1:8080, localhost:8081",
        {"api_listen": ("127.0.0.1:8080", "localhost:8081")},
    ),
    Case("env overrides file", "verbosity=1", {"verbosity": 5}, env={"FLEET_VERBOSITY": "5"}),
    Case("env alone", "", {"metadata": {"az": "a"}}, env={"FLEET_METADATA": "az=a"}),
    Case("empty env does not reset", "verbosity=2", {"verbosity": 2}, env={"FLEET_VERBOSITY": ""}),
    Case("unknown env ignored", "", {}, env={"FLEET_ENDPOINT": "x", "FLEET_TUNNEL": "y"}),
    Case(
        "unknown option warns",
        "frobnicate=1",
        {},
        warnings=("unknown option 'frobnicate' ignored",),
    ),
    Case(
        "enable_grpc accepted with warning",
        "enable_grpc=true",
        {"enable_grpc": True},
        warnings=("enable_grpc is accepted for compatibility and ignored",),
    ),
    Case(
        "verify_units deprecated",
        "verify_units=true",
        {"verify_units": True},
        warnings=("option verify_units is deprecated and ignored",),
    ),
    Case(
        "authorized_keys_file deprecated",
        "authorized_keys_file=/x",
        {"authorized_keys_file": "/x"},
        warnings=("option authorized_keys_file is deprecated and ignored",),
    ),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.id for c in ACCEPTED])
def test_accepted(tmp_path: Path, case: Case) -> None:
    config, warnings = _load(tmp_path, case.text, case.env)
    for key, value in case.expected.items():
        assert getattr(config, key) == value, key
    untouched = {k: v for k, v in vars(FleetConfig()).items() if k not in case.expected}
    assert {k: getattr(config, k) for k in untouched} == untouched
    assert len(warnings) == len(case.warnings)
    for wanted, got in zip(case.warnings, warnings, strict=True):
        assert wanted in got


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    message: tuple[str, ...]  # every fragment must appear in the one-line error
    env: dict[str, str] = field(default_factory=dict)


REFUSED = [
    Bad("verbosity not int", "verbosity=loud", ("verbosity", "'loud'", "integer")),
    Bad("verbosity negative", "verbosity=-1", ("verbosity", "'-1'", ">= 0")),
    Bad("token limit zero", "token_limit=0", ("token_limit", "'0'", ">= 1")),
    Bad("bool garbage", "disable_engine=yes", ("disable_engine", "'yes'", "boolean")),
    Bad("interval zero", "engine_reconcile_interval=0", ("engine_reconcile_interval", "positive")),
    Bad("interval text", "etcd_request_timeout=fast", ("etcd_request_timeout", "'fast'")),
    Bad("interval nan", "etcd_request_timeout=nan", ("etcd_request_timeout", "positive")),
    Bad("ttl without unit", "agent_ttl=30", ("agent_ttl", "'30'", "duration")),
    Bad("ttl bad unit", "agent_ttl=30x", ("agent_ttl", "'30x'")),
    Bad("ttl zero", "agent_ttl=0", ("agent_ttl", "positive")),
    Bad("ttl negative", "agent_ttl=-5s", ("agent_ttl", "positive")),
    Bad("servers empty", "etcd_servers=", ("etcd_servers", "at least one")),
    Bad("servers empty entry", "etcd_servers=http://a:1,,http://b:2", ("etcd_servers", "empty")),
    Bad("servers no scheme", "etcd_servers=127.0.0.1:2379", ("etcd_servers", "127.0.0.1:2379")),
    Bad("servers bad port", "etcd_servers=http://a:99999", ("etcd_servers", "port")),
    Bad("metadata no =", "metadata=region", ("metadata", "'region'", "key=value")),
    Bad("metadata empty key", "metadata==x", ("metadata", "key=value")),
    Bad("public ip hostname", "public_ip=my-host", ("public_ip", "'my-host'", "IP")),
    Bad("empty prefix", "etcd_key_prefix=", ("etcd_key_prefix", "empty")),
    Bad("cert without key", "etcd_certfile=/c.pem", ("etcd_certfile", "etcd_keyfile")),
    Bad("line without =", "verbosity 2", ("fleet.conf:1", "key=value")),
    Bad("section header", "[fleet]\nverbosity=1", ("fleet.conf:1", "sections")),
    Bad(
        "bad env value",
        "",
        ("FLEET_AGENT_TTL", "agent_ttl", "'soon'"),
        env={"FLEET_AGENT_TTL": "soon"},
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_refused(tmp_path: Path, case: Bad) -> None:
    with pytest.raises(InvalidConfig) as info:
        _load(tmp_path, case.text, case.env)
    message = str(info.value)
    assert "\n" not in message
    for fragment in case.message:
        assert fragment in message


def test_a_password_never_reaches_an_error_or_repr(tmp_path: Path) -> None:
    config, _ = _load(tmp_path, "", {"FLEET_ETCD_PASSWORD": "hunter2"})
    assert config.etcd_password == "hunter2"
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.conf", "does not exist"),
        (lambda p: p, "is a directory"),
    ],
    ids=["explicit path missing", "explicit path is a directory"],
)
def test_explicit_path_must_be_a_file(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        load_config(str(make(tmp_path)), {})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h45m", 9900.0),
        ("1.5s", 1.5),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("-1m", -60.0),
        ("10ns", 1e-8),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "30", "1m30", "m1", "1 s", "1d", "--1s"])
def test_go_durations_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        pytest.param("api_listen=0.0.0.0\n", "is not host:port", id="listen-no-port"),
        pytest.param("api_listen=:99999\n", "is not host:port", id="listen-bad-port"),
        pytest.param("api_tls_certfile=/x\n", "must be set together", id="tls-half"),
        pytest.param("api_tls_client_cafile=/x\n", "needs api_tls_certfile", id="ca-alone"),
        pytest.param(
            "api_tls_certfile=/nonexistent\napi_tls_keyfile=/nonexistent\n",
            "no such file",
            id="tls-missing-file",
        ),
    ],
)
def test_api_listener_options_refused(tmp_path: Path, lines: str, message: str) -> None:
    conf = tmp_path / "fleet.conf"
    conf.write_text(lines)
    with pytest.raises(InvalidConfig, match=message):
        load_config(str(conf), {})


def test_api_listener_options_accepted(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    conf = tmp_path / "fleet.conf"
    conf.write_text(f"api_listen=0.0.0.0:54728\napi_tls_certfile={cert}\napi_tls_keyfile={key}\n")
    config, _ = load_config(str(conf), {})
    assert config.api_listen == ("0.0.0.0:54728",)
    assert config.api_tls_keyfile == str(key)
