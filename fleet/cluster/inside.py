"""Reaching into a booted machine from the host, without ssh.

Commands run in every namespace of the machine's systemd (``nsenter -a`` on
its host PID), so ``systemctl`` or ``journalctl`` inside see the machine, not
the host; the machine's manager answers on its own D-Bus socket, which the
host sees through a bind mount.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from fleet.cluster.state import Node
from fleet.errors import FleetError


def system_state(bus: str) -> str:
    """systemd's Manager.SystemState over a machine's bus ("" if it does not answer)."""
    proc = subprocess.run(
        [
            "busctl",
            f"--address={bus}",
            "get-property",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "SystemState",
        ],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return proc.stdout.strip().removeprefix("s ").strip('"') if proc.returncode == 0 else ""


def _exec_argv(node: Node, argv: Sequence[str]) -> list[str]:
    if node.leader_pid <= 0:
        raise FleetError(f"{node.name} is not running")
    return ["nsenter", "-t", str(node.leader_pid), "-a", "--", *argv]


_NODE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


def exec(
    node: Node,
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float | None = 60,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in every namespace of the machine (``systemctl``, ``journalctl`` work)."""
    env = dict(_NODE_ENV)
    if "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    return subprocess.run(
        _exec_argv(node, argv),
        input=input,
        capture_output=capture,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def systemctl(
    node: Node, *args: str, timeout: float | None = 60
) -> subprocess.CompletedProcess[str]:
    return exec(node, ["systemctl", "--no-pager", *args], timeout=timeout)
