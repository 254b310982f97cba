"""Install fleetd on a machine: ``fleet.conf`` plus the repo's systemd units, enabled.

One code path for every kind of machine: a ``fleet-cluster`` machine (``root``
is its overlay's upper dir, written before it boots) and a Vagrant VM
(``root`` is ``/``, run by ``vagrant/provision.sh`` through
``python -m fleet.cluster provision``). It only writes files; it never starts
anything, so it is testable against a temporary directory.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fleet.errors import InvalidConfig

UNITS_DIR = Path(__file__).parent / "units"  # the checkout's units/, or the wheel's copy
DEFAULT_TARGET = "multi-user.target"
FLEETD_PLACEHOLDER = "@FLEETD@"
DROPIN_NAME = "50-fleet-cluster.conf"
LOCAL_BIN = Path("/usr/local/bin")

_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_CONFIG_KEY = re.compile(r"[a-z][a-z0-9_]*")


def scripts_dir() -> Path:
    """Where this installation's console scripts (fleetd, fleetctl) are.

    In a virtualenv, beside its interpreter. Installed outside one (pip's
    ``--user``, a system install into ``/usr/local``) they are wherever pip put
    them, as the distribution's record of its files says.
    """
    beside = Path(sys.executable).parent
    if (beside / "fleetd").exists():
        return beside
    # Every record, not just the first: run from a checkout, the source tree's
    # fleet.egg-info (which lists no scripts) can come before the installed one.
    for distribution in importlib.metadata.distributions(name="fleet"):
        for file in distribution.files or ():
            if file.name == "fleetd":
                script = Path(str(file.locate())).resolve()
                if script.is_file():
                    return script.parent
    return beside


def default_fleetd() -> Path:
    """This installation's ``fleetd`` console script (see :func:`scripts_dir`)."""
    return scripts_dir() / "fleetd"


def parse_metadata(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as fleet.conf takes it (spaces around ``=`` and ``,`` trimmed)."""
    result: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.fullmatch(key) or not value:
            raise InvalidConfig(f"metadata {pair!r}: expected key=value")
        result[key] = value
    return result


def format_metadata(metadata: Mapping[str, str]) -> str:
    for key, value in metadata.items():
        if not _KEY.fullmatch(key) or not value or any(c in value for c in ",=\n\"'"):
            raise InvalidConfig(f"metadata {key}={value!r}: not expressible in fleet.conf")
    return ",".join(f"{k}={v}" for k, v in sorted(metadata.items()))


def fleet_conf(
    *,
    etcd_servers: Sequence[str],
    public_ip: str | None,
    metadata: Mapping[str, str],
    agent_ttl: str,
    extra_config: Mapping[str, str] | None = None,
) -> str:
    """fleet's flat ``key=value`` configuration file."""
    if not etcd_servers:
        raise InvalidConfig("etcd_servers: at least one endpoint is needed")
    if not _DURATION.fullmatch(agent_ttl):
        raise InvalidConfig(f"agent_ttl {agent_ttl!r}: expected a duration such as 30s")
    items: dict[str, str] = {"etcd_servers": ",".join(etcd_servers)}
    if public_ip:
        items["public_ip"] = public_ip
    if metadata:
        items["metadata"] = format_metadata(metadata)
    items["agent_ttl"] = agent_ttl
    for key, value in (extra_config or {}).items():
        if not _CONFIG_KEY.fullmatch(key) or "\n" in str(value):
            raise InvalidConfig(f"extra config {key}={value!r}: not a fleet.conf line")
        items[key] = str(value)
    lines = ["# Written by `python -m fleet.cluster provision`; FLEET_<KEY> env overrides it."]
    lines += [f"{k}={v}" for k, v in items.items()]
    return "\n".join(lines) + "\n"


def _default_target(root: Path) -> str:
    """The target the machine boots: a fleet-cluster machine's small one, else multi-user."""
    link = root / "etc/systemd/system/default.target"
    if link.is_symlink():
        name = os.path.basename(os.readlink(link))
        if name.endswith(".target") and name != "graphical.target":
            return name
    return DEFAULT_TARGET


def _enable(system: Path, target: str, unit: str) -> Path:
    wants = system / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(f"/etc/systemd/system/{unit}")
    return link


def provision_machine(
    root: Path,
    *,
    etcd_servers: Sequence[str],
    public_ip: str | None,
    metadata: Mapping[str, str],
    agent_ttl: str = "30s",
    extra_config: Mapping[str, str] | None = None,
    fleet_bin: Path | None = None,
    api_port: int | None = None,
    restart_sec: str | None = None,
    target: str | None = None,
    units_dir: Path = UNITS_DIR,
) -> list[Path]:
    """Write fleet.conf and fleet's units into ``root``; returns the paths written.

    ``fleet_bin`` is the fleetd executable (or the directory holding it),
    default the venv's. ``api_port`` also installs ``fleet-tcp.socket`` on that
    port (no auth: private networks only). ``restart_sec`` adds a drop-in that
    shortens fleet's ``RestartSec=10s``. Units are enabled in ``target``
    (default: the root's default.target when it is a symlink, else
    multi-user.target).
    """
    fleetd = Path(fleet_bin) if fleet_bin is not None else default_fleetd()
    if fleetd.is_dir():
        fleetd = fleetd / "fleetd"
    if not fleetd.is_absolute():
        raise InvalidConfig(f"fleetd path {fleetd}: must be absolute (units get no PATH)")
    if restart_sec is not None and not _DURATION.fullmatch(restart_sec):
        raise InvalidConfig(f"restart_sec {restart_sec!r}: expected a duration such as 1s")
    if api_port is not None and not 0 < api_port < 65536:
        raise InvalidConfig(f"api_port {api_port}: not a TCP port")
    try:
        service = (units_dir / "fleet.service").read_text()
        socket = (units_dir / "fleet.socket").read_text()
        tcp = (units_dir / "fleet-tcp.socket").read_text()
    except OSError as exc:
        raise InvalidConfig(f"fleet units not found in {units_dir}") from exc
    if FLEETD_PLACEHOLDER not in service:
        raise InvalidConfig(f"{units_dir / 'fleet.service'}: no {FLEETD_PLACEHOLDER} placeholder")

    root = Path(root)
    target = target or _default_target(root)
    written: list[Path] = []

    def write(path: Path, text: str, mode: int = 0o644) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        written.append(path)

    conf = fleet_conf(
        etcd_servers=etcd_servers,
        public_ip=public_ip,
        metadata=metadata,
        agent_ttl=agent_ttl,
        extra_config=extra_config,
    )
    write(root / "etc/fleet/fleet.conf", conf)
    system = root / "etc/systemd/system"
    write(system / "fleet.service", service.replace(FLEETD_PLACEHOLDER, str(fleetd)))
    write(system / "fleet.socket", socket)
    dropin = system / "fleet.service.d" / DROPIN_NAME
    if restart_sec is not None:
        write(dropin, f"[Service]\nRestartSec={restart_sec}\n")
    elif dropin.exists():
        dropin.unlink()
    # `fleetctl` on the machine's PATH: `fleetctl --tunnel` runs `fleetctl fd-forward`
    # there, and people log in and type `fleetctl list-units`. An installation in
    # /usr/local/bin is there already (a link would replace the script with itself).
    for tool in ("fleetctl", "fleetd") if fleetd.parent != LOCAL_BIN else ():
        link = root / LOCAL_BIN.relative_to("/") / tool
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(fleetd.parent / tool)
        written.append(link)
    written.append(_enable(system, target, "fleet.service"))
    written.append(_enable(system, target, "fleet.socket"))
    if api_port is not None:
        tcp = re.sub(r"(?m)^ListenStream=.*$", f"ListenStream={api_port}", tcp)
        write(system / "fleet-tcp.socket", tcp)
        written.append(_enable(system, target, "fleet-tcp.socket"))
        # As its [Install] says: fleet.service pulls it in, so a start of fleet
        # after a stop brings the TCP listener back too.
        written.append(_enable(system, "fleet.service", "fleet-tcp.socket"))
    return written
