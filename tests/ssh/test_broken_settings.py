"""Every fleetctl command under broken settings: one line on stderr, a non-zero exit,
never a traceback, whatever is broken (endpoint, driver, TLS files, SSH keys, host keys).

The SSH cases go through a real sshd (``--tunnel``); the wrong-driver case points the
API driver at a real etcd.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess
from tests.ssh.conftest import SSHServer

FLEETCTL = (sys.executable, "-m", "fleetctl")
UNIT = str(Path(__file__).resolve().parents[2] / "units" / "examples" / "hello.service")

COMMANDS: list[tuple[str, ...]] = [
    ("list-units",),
    ("list-unit-files",),
    ("list-machines",),
    ("submit", UNIT),
    ("load", UNIT),
    ("start", UNIT),
    ("stop", "hello.service"),
    ("unload", "hello.service"),
    ("destroy", "hello.service"),
    ("restart", "hello.service"),
    ("cat", "hello.service"),
    ("status", "hello.service"),
    ("journal", "hello.service"),
    ("ssh", "hello.service"),
    ("plan", UNIT),
]

Settings = Callable[[EtcdProcess, SSHServer, Path], list[str]]


def _garbage(tmp: Path, name: str) -> str:
    path = tmp / name
    path.write_text("this is not what was asked for\n")
    return str(path)


SETTINGS: dict[str, Settings] = {
    "api-unreachable": lambda e, s, t: ["--endpoint", "http://127.0.0.1:1"],
    "etcd-unreachable": lambda e, s, t: ["--driver", "etcd", "--endpoint", "http://127.0.0.1:1"],
    "api-driver-at-etcd": lambda e, s, t: ["--endpoint", e.endpoint],
    "etcd-driver-at-unix-socket": lambda e, s, t: [
        "--driver", "etcd", "--endpoint", "unix:///nonexistent.sock",
    ],
    "missing-ca-file": lambda e, s, t: [
        "--endpoint", "https://127.0.0.1:1", "--ca-file", "/nonexistent/ca.pem",
    ],
    "ca-file-not-pem": lambda e, s, t: [
        "--endpoint", "https://127.0.0.1:1", "--ca-file", _garbage(t, "ca.pem"),
    ],
    "etcd-ca-file-not-pem": lambda e, s, t: [
        "--driver", "etcd", "--endpoint", "https://127.0.0.1:1",
        "--ca-file", _garbage(t, "etcd-ca.pem"),
    ],
    "missing-client-cert": lambda e, s, t: [
        "--endpoint", "https://127.0.0.1:1", "--cert-file", "/nonexistent/cert.pem",
    ],
    "missing-identity-file": lambda e, s, t: [
        "--tunnel", s.address, "--strict-host-key-checking=false",
        "--ssh-identity-file", "/nonexistent/id_ed25519",
    ],
    "corrupt-identity-file": lambda e, s, t: [
        "--tunnel", s.address, "--strict-host-key-checking=false",
        "--ssh-identity-file", _garbage(t, "id_ed25519"),
    ],
    "unknown-host-key-no-terminal": lambda e, s, t: [
        "--tunnel", s.address, "--known-hosts-file", str(t / "known_hosts"),
        "--ssh-identity-file", str(s.client_key),
    ],
    "tunnel-unreachable": lambda e, s, t: ["--tunnel", "127.0.0.1:1"],
}  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETCTL_", "SSH_AUTH"))}
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "NO_COLOR": "1", "HOME": "/nonexistent-home"},
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("broken", sorted(SETTINGS))
def test_every_command_fails_in_one_line(
    broken: str, etcd: EtcdProcess, sshd: SSHServer, tmp_path: Path
) -> None:
    flags = [*SETTINGS[broken](etcd, sshd, tmp_path), "--request-timeout", "2"]
    argvs = {" ".join(c): [*FLEETCTL, *flags, *c] for c in COMMANDS}
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = dict(zip(argvs, pool.map(_run, argvs.values()), strict=True))
    bad = {
        command: (proc.returncode, proc.stderr)
        for command, proc in results.items()
        if proc.returncode == 0
        or "Traceback" in proc.stderr
        or len(proc.stderr.strip().splitlines()) != 1
    }
    assert bad == {}
