"""What fleet-cluster requires of the Linux host it runs on.

Machines need Linux, root, a handful of tools (:func:`check_host` refuses in
one line, naming the package to install, before anything is touched) plus the
project's own installation at the same path inside every machine
(:func:`project_binds`, :func:`visible_in_machines`): a machine sees the
host's root file system through its overlay, nothing mounted on top of it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import fleet
from fleet.cluster.footprint import mounts_under
from fleet.errors import FleetError

_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "busctl": "systemd",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}


def check_host() -> None:
    """One clear refusal instead of a traceback half-way through a boot."""
    if not sys.platform.startswith("linux"):
        raise FleetError("fleet-cluster needs Linux (systemd-nspawn, network namespaces)")
    if os.geteuid() != 0:
        raise FleetError("must run as root (machines need mounts, netns and cgroups)")
    for tool, package in _TOOLS.items():
        if shutil.which(tool) is None:
            raise FleetError(
                f"{tool} not found: install it with "
                f"`apt-get install --no-install-recommends {package}`"
            )


def _on_host_root(path: Path) -> bool:
    path = Path(path).absolute()
    if any(path.is_relative_to(p) for p in ("/tmp", "/run", "/dev", "/proc", "/sys")):
        return False
    try:
        return os.stat(path).st_dev == os.stat("/").st_dev and not mounts_under(path)
    except OSError:
        return False


def project_binds() -> list[Path]:
    """The project's checkout, virtualenv and interpreter, where the machines'
    overlay of the host root would not show them (a checkout under /tmp, say):
    these are bind-mounted read-only at the same paths, so fleetd runs from the
    project's installation wherever it was cloned."""
    wanted = {
        Path(fleet.__file__).resolve().parent.parent,
        Path(sys.prefix).resolve(),
        Path(sys.base_prefix).resolve(),
    }
    return sorted(p for p in wanted if not _on_host_root(p))


def visible_in_machines(path: Path) -> bool:
    """Whether a host file shows at the same path inside every machine: on the
    host's root file system (machines get their own /tmp, /run, /dev and see no
    other mounts) or under one of :func:`project_binds`."""
    path = Path(path).absolute()
    return _on_host_root(path) or any(path.is_relative_to(b) for b in project_binds())
