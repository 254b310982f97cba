"""fleetd's configuration: every option of fleet's ``fleet.conf`` plus ours.

Owns :class:`FleetConfig` (one frozen value with every option and its default)
and :func:`load_config`, which reads fleet's flat ``key=value`` file (``#``/``;``
comment lines, no sections), overlays ``FLEET_<UPPER_KEY>`` environment
variables and validates every value, so a bad config is refused at start with
one line naming the option and the value. It returns warnings (deprecated or
ignored options) for the daemon to log instead of logging itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fleet.errors import InvalidConfig
from fleet.registry.keys import DEFAULT_PREFIX

DEFAULT_CONFIG_PATH = "/etc/fleet/fleet.conf"
ENV_PREFIX = "FLEET_"


@dataclass(frozen=True)
class FleetConfig:
    """fleetd's options (fleet-reference §3.1), with fleet's defaults."""

    verbosity: int = 0
    etcd_servers: tuple[str, ...] = ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
    etcd_username: str = ""
    etcd_password: str = field(default="", repr=False)
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    etcd_key_prefix: str = DEFAULT_PREFIX
    etcd_request_timeout: float = 1.0  # seconds
    engine_reconcile_interval: float = 2.0  # seconds
    public_ip: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    agent_ttl: float = 30.0  # seconds; fleet's Go duration "30s"
    units_directory: str = "/run/fleet/units/"
    systemd_user: bool = False
    token_limit: int = 100
    disable_engine: bool = False
    disable_watches: bool = False
    enable_grpc: bool = False  # accepted for compatibility, has no effect
    verify_units: bool = False  # deprecated in fleet, ignored
    authorized_keys_file: str = ""  # deprecated in fleet, ignored
    # Ours (features.md B8, architecture.md §5).
    shutdown_stops_units: bool = False
    disable_events: bool = False  # B13: no event history is written by this fleetd
    api_listen: tuple[str, ...] = ()  # extra TCP listeners, "host:port" (B11)
    api_tls_certfile: str = ""  # with api_tls_keyfile: the TCP listeners speak HTTPS
    api_tls_keyfile: str = ""
    api_tls_client_cafile: str = ""  # every client must present a certificate from this CA
    # Tests only: advertise this engine version instead of the code's (0: the code's).
    engine_version_override: int = 0

    @property
    def engine_lease_ttl(self) -> float:
        """fleet ties the engine leadership lease to the reconcile interval."""
        return 5 * self.engine_reconcile_interval


# --- value parsers: each takes the raw text and raises ValueError with a reason ---

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _parse_bool(raw: str) -> bool:
    # Go's strconv.ParseBool, which globalconf used: fleet configs written for it keep working.
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError("expected a boolean (true/false, 1/0, t/f)")


def _parse_int(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise ValueError("expected an integer") from None
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return parse


def _parse_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number of seconds, e.g. 1.5") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts both micro signs (U+00B5, U+03BC)
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(raw: str) -> float:
    """Go's ``time.ParseDuration`` (``30s``, ``1m30s``, ``500ms``, ``1.5h``) -> seconds.

    A bare ``0`` is a duration in Go; any other number needs a unit.
    """
    text = raw.strip()
    sign = 1.0
    if text and text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_TERM.match(text, pos)
        if match is None:
            raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def _parse_positive_duration(raw: str) -> float:
    value = parse_go_duration(raw)
    if value <= 0:
        raise ValueError("must be a positive duration")
    return value


def parse_string_list(raw: str) -> tuple[str, ...]:
    """fleet's list syntax: ``a,b`` or ``["a","b"]``; spaces, quotes and brackets stripped."""
    items = [item.strip(' []"') for item in raw.split(",")]
    if all(not item for item in items):
        return ()
    if any(not item for item in items):
        raise ValueError("empty entry in list")
    return tuple(items)


def _parse_etcd_servers(raw: str) -> tuple[str, ...]:
    servers = parse_string_list(raw)
    if not servers:
        raise ValueError("at least one etcd endpoint is needed")
    for server in servers:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{server!r} is not an http:// or https:// URL")
        try:
            parts.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError:
            raise ValueError(f"{server!r} has an invalid port") from None
    return servers


def parse_metadata(raw: str) -> dict[str, str]:
    """``k=v,k2=v2`` (optionally quoted); spaces trimmed; the last duplicate wins."""
    text = raw.strip().strip('"').strip("'")
    metadata: dict[str, str] = {}
    if not text.strip():
        return metadata
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        key, value = key.strip().strip('"'), value.strip().strip('"')
        if not sep or not key:
            # fleet logged and skipped such a pair; a unit then silently fails to place.
            raise ValueError(f"{pair.strip()!r} is not a key=value pair")
        metadata[key] = value
    return metadata


def _parse_ip(raw: str) -> str:
    if raw == "":
        return raw
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError("expected an IP address") from None
    return raw


def _parse_nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _parse_str(raw: str) -> str:
    return raw


def _parse_listen(raw: str) -> tuple[str, ...]:
    items = parse_string_list(raw)
    for item in items:
        _host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port")
    return items


_PARSERS: dict[str, Callable[[str], Any]] = {
    "verbosity": _parse_int(0),
    "etcd_servers": _parse_etcd_servers,
    "etcd_username": _parse_str,
    "etcd_password": _parse_str,
    "etcd_cafile": _parse_str,
    "etcd_certfile": _parse_str,
    "etcd_keyfile": _parse_str,
    "etcd_key_prefix": _parse_nonempty,
    "etcd_request_timeout": _parse_seconds,
    "engine_reconcile_interval": _parse_seconds,
    "public_ip": _parse_ip,
    "metadata": parse_metadata,
    "agent_ttl": _parse_positive_duration,
    "units_directory": _parse_nonempty,
    "systemd_user": _parse_bool,
    "token_limit": _parse_int(1),
    "disable_engine": _parse_bool,
    "disable_watches": _parse_bool,
    "enable_grpc": _parse_bool,
    "verify_units": _parse_bool,
    "authorized_keys_file": _parse_str,
    "shutdown_stops_units": _parse_bool,
    "disable_events": _parse_bool,
    "api_listen": _parse_listen,
    "api_tls_certfile": _parse_str,
    "api_tls_keyfile": _parse_str,
    "api_tls_client_cafile": _parse_str,
    "engine_version_override": _parse_int(0),
}

_SECRET_OPTIONS = frozenset({"etcd_password"})
_DEPRECATED = frozenset({"verify_units", "authorized_keys_file"})


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _read_file(path: Path, *, explicit: bool) -> list[tuple[str, str, str]]:
    """(option, value, where) for every assignment in the file, in order."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise InvalidConfig(f"config file {path} does not exist") from None
        return []
    except IsADirectoryError:
        raise InvalidConfig(f"config file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(f"cannot read config file {path}: {exc}") from exc
    entries: list[tuple[str, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        where = f"{path}:{number}"
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            raise InvalidConfig(f"{where}: sections are not supported in fleet.conf: {stripped}")
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidConfig(f"{where}: expected key=value, got {stripped!r}")
        entries.append((key, _unquote(value.strip()), where))
    return entries


def load_config(path: str | None, environ: Mapping[str, str]) -> tuple[FleetConfig, list[str]]:
    """Read ``path`` (None: the default, which may be missing), overlay ``FLEET_*`` env.

    Unknown options in the file are ignored with a warning (fleet's globalconf
    ignored them silently; refusing to start would break configs that carry
    options of a newer or older fleet, silence would hide typos). Unknown
    ``FLEET_*`` variables are ignored silently: fleetctl reads its own from
    the same environment.
    """
    warnings: list[str] = []
    explicit = path is not None
    file_path = Path(path if path is not None else DEFAULT_CONFIG_PATH)
    raw: dict[str, tuple[str, str]] = {}
    for key, value, where in _read_file(file_path, explicit=explicit):
        if key not in _PARSERS:
            warnings.append(f"{where}: unknown option {key!r} ignored")
            continue
        raw[key] = (value, where)
    for key in _PARSERS:
        env_name = ENV_PREFIX + key.upper()
        env_value = environ.get(env_name)
        # globalconf skipped empty variables: an empty FLEET_X does not reset X.
        if env_value:
            raw[key] = (env_value.strip(), f"environment {env_name}")

    values: dict[str, Any] = {}
    for key, (value, where) in raw.items():
        try:
            values[key] = _PARSERS[key](value)
        except ValueError as exc:
            shown = "***" if key in _SECRET_OPTIONS else repr(value)
            raise InvalidConfig(f"{where}: invalid {key} {shown}: {exc}") from None
        if key in _DEPRECATED:
            warnings.append(f"{where}: option {key} is deprecated and ignored")
    if values.get("enable_grpc"):
        warnings.append(
            "enable_grpc is accepted for compatibility and ignored: agents read their "
            "schedule from etcd v3 watches"
        )
    config = FleetConfig(**values)
    if bool(config.etcd_certfile) != bool(config.etcd_keyfile):
        raise InvalidConfig(
            "etcd_certfile and etcd_keyfile must be set together "
            f"(etcd_certfile={config.etcd_certfile!r}, etcd_keyfile={config.etcd_keyfile!r})"
        )
    if bool(config.api_tls_certfile) != bool(config.api_tls_keyfile):
        raise InvalidConfig("api_tls_certfile and api_tls_keyfile must be set together")
    if config.api_tls_client_cafile and not config.api_tls_certfile:
        raise InvalidConfig("api_tls_client_cafile needs api_tls_certfile and api_tls_keyfile")
    for option in ("api_tls_certfile", "api_tls_keyfile", "api_tls_client_cafile"):
        if (path := getattr(config, option)) and not Path(path).is_file():
            raise InvalidConfig(f"{option}: no such file {path!r}")
    return config, warnings
