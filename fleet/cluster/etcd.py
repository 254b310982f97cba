"""Run a private etcd server: for the local cluster, the tests and the benchmarks.

One code path starts etcd everywhere, with non-default ports (a Debian
``etcd-server`` install may already own 2379), a data dir we own, fast raft
timings for tests and automatic compaction (an uncompacted etcd slows down
after about 75,000 revisions, as measured with Debian's etcd 3.4). It is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fleet.errors import FleetError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdProcess:
    """A single-member etcd bound to ``host``; ``start()`` waits until it is healthy."""

    host: str = "127.0.0.1"
    client_port: int = 0
    peer_port: int = 0
    data_dir: Path | None = None
    fast: bool = True  # heartbeat 10 ms / election 100 ms: honours 1 s lease TTLs
    log_path: Path | None = None
    # A member of a multi-member cluster (fleet.cluster.etcd_members): its name
    # and the whole --initial-cluster; raft timings in ms (heartbeat, election).
    name: str = "fleet"
    initial_cluster: str = ""
    raft_ms: tuple[int, int] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_dir: bool = field(default=False, init=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def start(self, timeout: float = 20.0) -> EtcdProcess:
        self.spawn()
        return self.wait_healthy(timeout)

    def spawn(self) -> None:
        """Start the process without waiting (members of one cluster start together)."""
        binary = shutil.which("etcd")
        if binary is None:
            raise FleetError("etcd not found: install Debian's etcd-server package")
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="fleet-etcd-"))
            self._own_dir = True
        peer = self.peer_url
        args = [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.initial_cluster or f'{self.name}={peer}'}",
            "--initial-cluster-state=new",
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=1000",
            "--logger=zap",
            "--log-level=error",
        ]
        if self.raft_ms is not None:
            heartbeat, election = self.raft_ms
            args += [f"--heartbeat-interval={heartbeat}", f"--election-timeout={election}"]
        elif self.fast:
            args += ["--heartbeat-interval=10", "--election-timeout=100"]
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()

    def wait_healthy(self, timeout: float = 20.0) -> EtcdProcess:
        """Block until /health answers true (a member needs its quorum for that)."""
        if self.proc is None:
            raise FleetError("etcd was not started")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FleetError(f"etcd exited with status {self.proc.returncode}")
            if self.healthy():
                return self
            time.sleep(0.02)
        self.stop()
        raise FleetError(f"etcd on {self.endpoint} not healthy after {timeout:.0f}s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=0.5) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    def pause(self) -> None:
        """SIGSTOP: etcd stops answering but keeps its sockets (an outage)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def detach(self, pid_file: Path) -> int:
        """Let etcd outlive this process (``fleet-cluster up``): record its PID, forget it.

        Stop it later, from any process, with :meth:`stop_detached`.
        """
        if self.proc is None or self.proc.poll() is not None:
            raise FleetError("etcd is not running")
        pid = self.proc.pid
        pid_file.write_text(f"{pid}\n")
        self.proc = None
        self._own_dir = False
        return pid

    @staticmethod
    def stop_detached(pid_file: Path, timeout: float = 10.0) -> bool:
        """SIGTERM (then SIGKILL) the etcd recorded in ``pid_file``; False if none ran.

        The PID is only signalled while its command line is still etcd's, so a
        stale file never kills a recycled PID.
        """

        def alive(pid: int) -> bool:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                return False
            return os.path.basename(argv[0]) == b"etcd"

        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return False
        if not alive(pid):
            pid_file.unlink(missing_ok=True)
            return False
        for sig, wait in ((signal.SIGCONT, 0.0), (signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not alive(pid):
                break
        pid_file.unlink(missing_ok=True)
        return True

    def __enter__(self) -> EtcdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
