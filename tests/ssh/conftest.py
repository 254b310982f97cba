"""A private, real OpenSSH server on 127.0.0.1 for the SSH tests (never the system sshd)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.cluster.etcd import free_port
from fleet.errors import Timeout
from tests.functional.cluster import wait_for

SSHD = "/usr/sbin/sshd"


@dataclass
class SSHServer:
    port: int
    dir: Path
    client_key: Path
    host_key: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def bin(self) -> Path:
        """First on the PATH of every SSH session (sshd's SetEnv): tests put fake
        ``systemctl``/``journalctl`` here, since this host's PID 1 is not systemd."""
        return self.dir / "bin"

    def start(self) -> None:
        with open(self.dir / "sshd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

        def greets() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    return s.recv(4).startswith(b"SSH-")
            except OSError:
                return False

        try:
            wait_for(greets, 10, interval=0.05, what="sshd's banner")
        except Timeout as exc:
            raise RuntimeError("sshd did not come up") from exc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def new_host_key(self) -> None:
        """Replace the host key (what a reinstalled machine looks like) and restart."""
        self.stop()
        self.host_key.unlink()
        self.host_key.with_suffix(".pub").unlink()
        _keygen(self.host_key)
        self.start()


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SSHServer]:
    if os.geteuid() != 0 or shutil.which("ssh-keygen") is None or not Path(SSHD).exists():
        pytest.fail("the SSH tests need root and openssh-server (see scripts/setup.sh)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    host_key = tmp_path / "ssh_host_ed25519_key"
    client_key = tmp_path / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    (tmp_path / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    (tmp_path / "bin").mkdir()
    path = f"{tmp_path}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    (tmp_path / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {tmp_path}/sshd.pid
AuthorizedKeysFile {tmp_path}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding yes
AllowAgentForwarding yes
SetEnv PATH={path}
"""
    )
    server = SSHServer(port=port, dir=tmp_path, client_key=client_key, host_key=host_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()
