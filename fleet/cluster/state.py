"""A cluster's record on disk: the state file by which any process finds its machines.

``<state_dir>/nodes.json`` holds the :class:`Layout` (names, subnet, bridge)
plus one :class:`Node` per machine, running or powered off. Every change is a
read-modify-write under an ``flock`` on ``<state_dir>/.lock``, so a test, the
``fleet-cluster`` CLI or a second process may act on one cluster at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleet.cluster.footprint import is_nspawn
from fleet.errors import FleetError, NotFound

DEFAULT_STATE_DIR = Path("/tmp/fleet-cluster")
STATE_FILE = "nodes.json"
KNOWN_HOSTS = "known_hosts"  # every machine's sshd host key, by IP
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


@dataclass
class Node:
    """A booted (or powered-off: ``leader_pid == 0``) machine."""

    name: str
    ip: str
    netns: str
    machine_id: str
    bus: str
    leader_pid: int
    nspawn_pid: int
    root: Path
    dir: Path
    index: int = 0
    host_key: str = ""  # the sshd public host key line, for a known_hosts file

    @property
    def running(self) -> bool:
        return self.nspawn_pid > 0 and is_nspawn(self.nspawn_pid, self.name)


@dataclass
class Layout:
    """Where a cluster lives; several clusters differ in every field."""

    state_dir: Path = DEFAULT_STATE_DIR
    prefix: str = "fleet"
    subnet: str = "10.251.0"
    bridge: str = "fleetbr0"
    tmpfs: str = "512m"

    @property
    def host_ip(self) -> str:
        return f"{self.subnet}.1"

    def node_ip(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"

    def node_name(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def check(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,8}", self.prefix):
            raise FleetError(f"prefix {self.prefix!r}: 1-9 chars of [a-z0-9-], a letter first")
        if not re.fullmatch(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})", self.subnet) or any(
            int(p) > 255 for p in self.subnet.split(".")
        ):
            raise FleetError(f"subnet {self.subnet!r}: give the first three octets of a /24")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,15}", self.bridge):
            raise FleetError(f"bridge {self.bridge!r}: not a valid interface name")
        longest = self.state_dir / f"{self.prefix}200" / "dbus" / "system_bus_socket"
        if len(os.fsencode(longest)) > _UNIX_PATH_MAX:
            raise FleetError(f"state dir {self.state_dir} is too long for unix socket paths")


@dataclass
class State:
    layout: Layout
    nodes: list[Node] = field(default_factory=list)


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _node_to_json(node: Node) -> dict[str, object]:
    data = asdict(node)
    data["root"] = str(node.root)
    data["dir"] = str(node.dir)
    return data


def _node_from_json(data: dict[str, object]) -> Node:
    return Node(
        name=str(data["name"]),
        ip=str(data["ip"]),
        netns=str(data["netns"]),
        machine_id=str(data["machine_id"]),
        bus=str(data["bus"]),
        leader_pid=int(str(data["leader_pid"])),
        nspawn_pid=int(str(data["nspawn_pid"])),
        root=Path(str(data["root"])),
        dir=Path(str(data["dir"])),
        index=int(str(data.get("index", 0))),
        host_key=str(data.get("host_key", "")),
    )


def known_hosts_path(state_dir: Path) -> Path:
    return state_dir / KNOWN_HOSTS


def read_state(state_dir: Path) -> State | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FleetError(f"{state_dir / STATE_FILE}: unreadable cluster state") from exc
    layout = Layout(
        state_dir=state_dir,
        prefix=data["prefix"],
        subnet=data["subnet"],
        bridge=data["bridge"],
        tmpfs=data["tmpfs"],
    )
    return State(layout, [_node_from_json(n) for n in data["nodes"]])


def write_state(state: State) -> None:
    lay = state.layout
    data = {
        "prefix": lay.prefix,
        "subnet": lay.subnet,
        "bridge": lay.bridge,
        "tmpfs": lay.tmpfs,
        "host_ip": lay.host_ip,
        "nodes": [_node_to_json(n) for n in sorted(state.nodes, key=lambda n: n.index)],
    }
    _replace(lay.state_dir / STATE_FILE, json.dumps(data, indent=2) + "\n")
    # Kept beside the state so fleetctl ssh/status/journal/--tunnel never prompt
    # (fleet-cluster env points FLEETCTL_KNOWN_HOSTS_FILE at it); a replaced
    # machine's new host key lands here with its new state.
    _replace(
        lay.state_dir / KNOWN_HOSTS,
        "".join(
            f"{n.ip} {n.host_key}\n"
            for n in sorted(state.nodes, key=lambda n: n.index)
            if n.host_key
        ),
    )


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def update_node(state_dir: Path, node: Node) -> None:
    with locked(state_dir):
        state = read_state(state_dir)
        if state is None:
            raise NotFound(f"no cluster state in {state_dir}")
        state.nodes = [n for n in state.nodes if n.name != node.name] + [node]
        write_state(state)


def load(state_dir: Path = DEFAULT_STATE_DIR) -> list[Node]:
    """The machines recorded in ``state_dir`` (running or powered off), by index."""
    state = read_state(state_dir)
    if state is None:
        raise NotFound(f"no cluster in {state_dir}: run `fleet-cluster up` first")
    return sorted(state.nodes, key=lambda n: n.index)


def layout(state_dir: Path = DEFAULT_STATE_DIR) -> Layout:
    state = read_state(state_dir)
    if state is None:
        raise NotFound(f"no cluster in {state_dir}: run `fleet-cluster up` first")
    return state.layout


def find(state_dir: Path, name_or_id: str) -> Node:
    """A machine by name, IP or (a unique prefix of its) machine id."""
    nodes = load(state_dir)
    exact = [n for n in nodes if name_or_id in (n.name, n.ip, n.machine_id)]
    if exact:
        return exact[0]
    by_id = [n for n in nodes if n.machine_id.startswith(name_or_id)]
    if len(by_id) == 1:
        return by_id[0]
    names = ", ".join(n.name for n in nodes)
    raise NotFound(f"no machine {name_or_id!r} in {state_dir} (machines: {names})")
