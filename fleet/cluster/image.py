"""The upper layer that turns the host's root into one small, distinct machine.

A machine's ``/`` is an overlay: the host's root below, this layer on top. It
gives the machine its own identity (machine id, hostname, ``/etc/hosts``, an
sshd host key), boots it into ``fleet-node.target`` (basic system, D-Bus,
sshd) instead of the host's default target, masks what the host enables but a
throw-away machine must not run (gettys, timesyncd, the host's timers: they
leak in through the live lower layer), keeps its journal in memory. A
``setup`` callback (fleetd, see :mod:`fleet.cluster.provision`) writes into
the same layer, given the machine's :class:`NodeSpec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.cluster.footprint import run
from fleet.cluster.state import Layout

NODE_TARGET = "fleet-node.target"
SSHD_DIR = "etc/ssh/fleet-node"  # relative to a machine's root

# Units the host image enables that make no sense in a throw-away machine:
# they are pulled by sysinit/timers targets, which every boot reaches.
_MASKED = (
    "console-getty.service",
    "getty@tty1.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "e2scrub_reap.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
)

_NODE_TARGET_UNIT = """\
[Unit]
Description=fleet-cluster machine (basic system, D-Bus, sshd)
Requires=basic.target dbus.socket
Wants=dbus.service
After=basic.target dbus.service
AllowIsolate=yes
"""

_SSHD_CONFIG = f"""\
# A fleet-cluster machine: only the cluster key may log in, as root.
Port 22
AddressFamily inet
HostKey /{SSHD_DIR}/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile /{SSHD_DIR}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
AllowAgentForwarding yes
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
"""

_SSHD_UNIT = f"""\
[Unit]
Description=OpenSSH server of a fleet-cluster machine
After=network.target

[Service]
ExecStartPre=/usr/sbin/sshd -t -f /{SSHD_DIR}/sshd_config
ExecStart=/usr/sbin/sshd -D -e -f /{SSHD_DIR}/sshd_config
ExecReload=/bin/kill -HUP $MAINPID
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755
Restart=on-failure

[Install]
WantedBy={NODE_TARGET}
"""


@dataclass(frozen=True)
class NodeSpec:
    """What a machine will be, before it boots (handed to ``setup`` callbacks)."""

    name: str
    index: int
    ip: str
    host_ip: str
    machine_id: str


def keygen(path: Path, comment: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


def hosts_file(lay: Layout, nodes: Sequence[tuple[str, str]]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines.append(f"{lay.host_ip} {lay.prefix}-host")
    lines += [f"{ip} {name}" for name, ip in nodes]
    return "\n".join(lines) + "\n"


def write_upper(lay: Layout, spec: NodeSpec, upper: Path, hosts: str, cluster_pub: str) -> str:
    """The files that make the host's root a small, distinct machine; returns its host key."""
    system = upper / "etc/systemd/system"
    (system / f"{NODE_TARGET}.wants").mkdir(parents=True, exist_ok=True)
    (upper / "etc/machine-id").write_text(spec.machine_id + "\n")
    (upper / "etc/hostname").write_text(spec.name + "\n")
    (upper / "etc/hosts").write_text(hosts)
    (system / NODE_TARGET).write_text(_NODE_TARGET_UNIT)
    default = system / "default.target"
    default.unlink(missing_ok=True)
    default.symlink_to(NODE_TARGET)
    host_timers = Path("/etc/systemd/system/timers.target.wants")
    masked = set(_MASKED) | (
        {p.name for p in host_timers.iterdir()} if host_timers.is_dir() else set()
    )
    for unit in sorted(masked):
        link = system / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    journald = upper / "etc/systemd/journald.conf.d"
    journald.mkdir(parents=True, exist_ok=True)
    (journald / "fleet-node.conf").write_text("[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n")
    ssh = upper / SSHD_DIR
    host_key = keygen(ssh / "ssh_host_ed25519_key", f"root@{spec.name}")
    (ssh / "sshd_config").write_text(_SSHD_CONFIG)
    (ssh / "authorized_keys").write_text(cluster_pub + "\n")
    (ssh / "authorized_keys").chmod(0o600)
    (system / "sshd.service").unlink(missing_ok=True)  # the host's may be an alias symlink
    (system / "sshd.service").write_text(_SSHD_UNIT)
    wants = system / f"{NODE_TARGET}.wants" / "sshd.service"
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/sshd.service")
    return host_key
