"""A multi-member etcd on one host: ``fleet-cluster up --etcd-members 3|5``, the
registry's failover tests and the fault suite.

Every member is an :class:`~fleet.cluster.etcd.EtcdProcess` with its own name
(``m1``..``mN``), data dir, client and peer port, started together (a member
only turns healthy once a quorum of its peers is up). Faults act on one member
by PID: ``kill`` (SIGKILL), ``restart`` (same data dir and ports), ``pause``
(SIGSTOP: sockets stay open, nothing answers), ``resume``, and ``move_leader``
(etcd's leadership transfer, asked of the current leader through the JSON
gateway, so no ``etcdctl`` is needed). A cluster detached by ``up`` is found
again from its :class:`MemberSpec` records and PID files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fleet.cluster.etcd import EtcdProcess, free_port
from fleet.errors import FleetError, InvalidInput, NotFound, Timeout

MEMBER_COUNTS = (1, 3, 5)


@dataclass(frozen=True)
class MemberSpec:
    """Everything needed to run (or restart) one member; stored in cluster.json."""

    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: str
    log_path: str | None
    pid_file: str | None
    initial_cluster: str
    raft_ms: tuple[int, int] | None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberSpec:
        raft = data.get("raft_ms")
        return cls(**{**data, "raft_ms": tuple(raft) if raft else None})

    def process(self) -> EtcdProcess:
        return EtcdProcess(
            host=self.host,
            client_port=self.client_port,
            peer_port=self.peer_port,
            data_dir=Path(self.data_dir),
            fast=False,
            log_path=Path(self.log_path) if self.log_path else None,
            name=self.name,
            initial_cluster=self.initial_cluster,
            raft_ms=self.raft_ms,
        )


def plan_members(
    count: int,
    host: str,
    data_root: Path,
    *,
    base_port: int = 0,
    log_dir: Path | None = None,
    pid_dir: Path | None = None,
    raft_ms: tuple[int, int] | None = None,
) -> list[MemberSpec]:
    """``count`` member specs; with ``base_port`` member i (from 0) listens on
    ``base_port + 2i`` (clients) and ``base_port + 2i + 1`` (peers), else on free ports."""
    if count not in MEMBER_COUNTS:
        raise InvalidInput(f"etcd members: {count} is not one of 1, 3, 5")
    ports = []
    for i in range(count):
        if base_port:
            ports.append((base_port + 2 * i, base_port + 2 * i + 1))
        else:
            ports.append((free_port(host), free_port(host)))
    names = [f"m{i + 1}" for i in range(count)]
    initial = ",".join(
        f"{name}=http://{host}:{peer}" for name, (_, peer) in zip(names, ports, strict=True)
    )
    return [
        MemberSpec(
            name=name,
            host=host,
            client_port=client,
            peer_port=peer,
            data_dir=str(data_root / f"etcd-{name}"),
            log_path=str(log_dir / f"etcd-{name}.log") if log_dir else None,
            pid_file=str(pid_dir / f"etcd-{name}.pid") if pid_dir else None,
            initial_cluster=initial,
            raft_ms=raft_ms,
        )
        for name, (client, peer) in zip(names, ports, strict=True)
    ]


def _is_etcd(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.path.basename(argv[0]) == b"etcd"


def _post(endpoint: str, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{endpoint}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


class EtcdCluster:
    """The members of one etcd cluster; faults act on a member by name."""

    def __init__(self, specs: list[MemberSpec], *, own_dir: Path | None = None) -> None:
        """``own_dir``: removed by :meth:`stop` (the members' data, when ours)."""
        self.specs = {spec.name: spec for spec in specs}
        self._own_dir = own_dir
        self._detached = False
        self._procs: dict[str, EtcdProcess] = {}

    # ------------------------------------------------------------ lifecycle

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    @property
    def endpoints(self) -> list[str]:
        return [spec.endpoint for spec in self.specs.values()]

    @property
    def endpoint(self) -> str:
        """Every client URL, comma-joined: what fleet's etcd_servers and fleetctl take."""
        return ",".join(self.endpoints)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for spec in self.specs.values():
            Path(spec.data_dir).mkdir(parents=True, exist_ok=True)
            self._spawn(spec)
        try:
            for name in self.specs:
                self._procs[name].wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, spec: MemberSpec) -> EtcdProcess:
        process = spec.process()
        process.spawn()
        self._procs[spec.name] = process
        if spec.pid_file and process.proc is not None:
            Path(spec.pid_file).write_text(f"{process.proc.pid}\n")
        return process

    def stop(self) -> None:
        """Stop every member (SIGCONT, SIGTERM, then SIGKILL), by PID."""
        for name in self.specs:
            self._signal_and_wait(name, signal.SIGTERM)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def detach(self) -> None:
        """Let the members outlive this process; their PID files find them again."""
        for process in self._procs.values():
            process.proc = None
        self._procs.clear()
        self._detached = True

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._detached:  # ``up`` handed the members over to their PID files
            return
        with contextlib.suppress(Exception):
            self.stop()

    # ------------------------------------------------------------ one member

    def spec(self, name: str) -> MemberSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise NotFound(
                f"no etcd member {name!r}: the members are {', '.join(self.specs)}"
            ) from None

    def pid(self, name: str) -> int | None:
        spec = self.spec(name)
        process = self._procs.get(name)
        if process is not None and process.proc is not None:
            return process.proc.pid if process.proc.poll() is None else None
        if spec.pid_file:
            try:
                pid = int(Path(spec.pid_file).read_text().strip())
            except (OSError, ValueError):
                return None
            return pid if _is_etcd(pid) else None
        return None

    def running(self, name: str) -> bool:
        return self.pid(name) is not None

    def _signal_and_wait(self, name: str, sig: signal.Signals) -> None:
        pid = self.pid(name)
        process = self._procs.pop(name, None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if process is not None and process.proc is not None:
                    if process.proc.poll() is not None:
                        break
                elif not _is_etcd(pid):
                    break
                time.sleep(0.02)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if process is not None and process.proc is not None:
                process.proc.wait()
        spec = self.specs[name]
        if spec.pid_file:
            Path(spec.pid_file).unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """SIGKILL the member: a crash, no goodbye to its peers or clients."""
        if not self.running(name):
            raise FleetError(f"etcd member {name} is not running")
        self._signal_and_wait(name, signal.SIGKILL)

    def restart(self, name: str, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Start the member again on its data dir and ports (stopping it first if it runs).
        ``wait``: until it is healthy (which needs a quorum of its peers)."""
        spec = self.spec(name)
        if self.running(name):
            self._signal_and_wait(name, signal.SIGTERM)
        process = self._spawn(spec)
        if wait:
            process.wait_healthy(timeout)

    def pause(self, name: str) -> None:
        """SIGSTOP: the member keeps its sockets but answers nobody (a hang)."""
        self._send(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self._send(name, signal.SIGCONT)

    def _send(self, name: str, sig: signal.Signals) -> None:
        pid = self.pid(name)
        if pid is None:
            raise FleetError(f"etcd member {name} is not running")
        os.kill(pid, sig)

    # ------------------------------------------------------------ raft

    def status(self, name: str, timeout: float = 1.0) -> tuple[int, int] | None:
        """(member id, leader id) as ``name`` sees it; None if it does not answer."""
        try:
            reply = _post(self.spec(name).endpoint, "/v3/maintenance/status", {}, timeout)
        except (OSError, ValueError):
            return None
        return int(reply["header"]["member_id"]), int(reply.get("leader", 0))

    def leader(self, timeout: float = 10.0) -> str:
        """The name of the member the answering members agree leads; waits for one."""
        deadline = time.monotonic() + timeout
        while True:
            ids: dict[int, str] = {}
            leaders: set[int] = set()
            for name in self.specs:
                if not self.running(name):
                    continue
                seen = self.status(name)
                if seen is not None:
                    ids[seen[0]] = name
                    leaders.add(seen[1])
            if len(leaders) == 1 and (leader := leaders.pop()) in ids:
                return ids[leader]
            if time.monotonic() > deadline:
                raise Timeout(f"etcd members agree on no leader after {timeout:.0f}s")
            time.sleep(0.05)

    def move_leader(self, target: str, timeout: float = 10.0) -> None:
        """Transfer raft leadership to ``target`` and wait until every member sees it."""
        seen = self.status(target)
        if seen is None:
            raise FleetError(f"etcd member {target} does not answer")
        current = self.leader(timeout)
        if current == target:
            return
        _post(
            self.spec(current).endpoint,
            "/v3/maintenance/transfer-leadership",
            {"targetID": str(seen[0])},
            timeout,
        )
        deadline = time.monotonic() + timeout
        while self.leader(timeout) != target:
            if time.monotonic() > deadline:
                raise Timeout(f"etcd leadership did not move to {target} in {timeout:.0f}s")
            time.sleep(0.05)
