"""Real systemd machines on one Linux host: boot, power-cut, reboot, replace, tear down.

Each machine is ``systemd-nspawn --boot`` on an overlay whose lower layer is
the host's ``/`` and whose upper layer lives on a per-machine tmpfs, in its own
network namespace wired to a host bridge (host at ``.1``, no default route in
the machines), in its own cgroup in every hierarchy. It runs only systemd,
journald, dbus-daemon and sshd (a small ``fleet-node.target``), plus whatever a
``setup`` callback installs into its upper dir (fleetd, see
:mod:`fleet.cluster.provision`). The recipe and its pitfalls are in
``shared/reference/systemd-nodes.md``; this module owns its Python
implementation and the JSON state file that lets another process (the
``fleet-cluster`` CLI, a test) find the machines again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import fleet
from fleet.errors import FleetError, NotFound, Timeout

DEFAULT_STATE_DIR = Path("/tmp/fleet-cluster")
STATE_FILE = "nodes.json"
CLUSTER_KEY = "id_ed25519"
MACHINES_DIR = Path("/run/systemd/machines")
NSPAWN_RUN = Path("/run/systemd/nspawn")
CGROUP_GROUP = "fleet-cluster"
NODE_TARGET = "fleet-node.target"
SSHD_DIR = "etc/ssh/fleet-node"  # relative to a machine's root
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL
_IFNAME_MAX = 15

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


@dataclass(frozen=True)
class NodeSpec:
    """What a machine will be, before it boots (handed to ``setup`` callbacks)."""

    name: str
    index: int
    ip: str
    host_ip: str
    machine_id: str


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
        return self.nspawn_pid > 0 and _is_nspawn(self.nspawn_pid, self.name)


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
class _State:
    layout: Layout
    nodes: list[Node] = field(default_factory=list)


# ---------------------------------------------------------------- checks


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
        return os.stat(path).st_dev == os.stat("/").st_dev and not _mounts_under(path)
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


# ---------------------------------------------------------------- small helpers


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise FleetError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _cgroup_roots() -> list[Path]:
    """The hierarchies a machine's processes must be grouped in (hybrid or pure v2 host)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [p for p in (base / "systemd", base / "unified") if p.is_dir()]


def _cgroups(name: str) -> list[Path]:
    return [root / CGROUP_GROUP / name for root in _cgroup_roots()]


def _cgroup_pids(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    if not cgroup.is_dir():
        return pids
    for procs in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(x) for x in procs.read_text().split())
    return pids


def _rmdir_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def _is_nspawn(pid: int, name: str) -> bool:
    """Guards every signal we send: only the nspawn we started, never a recycled PID."""
    argv = _cmdline(pid)
    return bool(argv) and argv[0].endswith("systemd-nspawn") and f"--machine={name}" in argv


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    found: list[Path] = []
    prefix = str(path).rstrip("/")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: -len(p.parts))


def _umount(point: Path) -> None:
    if _run(["umount", str(point)], check=False).returncode != 0:
        _run(["umount", "-l", str(point)], check=False)


def _netns_names() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _keygen(path: Path, comment: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


# ---------------------------------------------------------------- state file


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
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


def _read_state(state_dir: Path) -> _State | None:
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
    return _State(layout, [_node_from_json(n) for n in data["nodes"]])


def _write_state(state: _State) -> None:
    lay = state.layout
    data = {
        "prefix": lay.prefix,
        "subnet": lay.subnet,
        "bridge": lay.bridge,
        "tmpfs": lay.tmpfs,
        "host_ip": lay.host_ip,
        "nodes": [_node_to_json(n) for n in sorted(state.nodes, key=lambda n: n.index)],
    }
    tmp = lay.state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(lay.state_dir / STATE_FILE)


def _update_node(state_dir: Path, node: Node) -> None:
    with _locked(state_dir):
        state = _read_state(state_dir)
        if state is None:
            raise NotFound(f"no cluster state in {state_dir}")
        state.nodes = [n for n in state.nodes if n.name != node.name] + [node]
        _write_state(state)


def load(state_dir: Path = DEFAULT_STATE_DIR) -> list[Node]:
    """The machines recorded in ``state_dir`` (running or powered off), by index."""
    state = _read_state(state_dir)
    if state is None:
        raise NotFound(f"no cluster in {state_dir}: run `fleet-cluster up` first")
    return sorted(state.nodes, key=lambda n: n.index)


def layout(state_dir: Path = DEFAULT_STATE_DIR) -> Layout:
    state = _read_state(state_dir)
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


# ---------------------------------------------------------------- building a machine


def ensure_bridge(lay: Layout) -> None:
    """The host side of the network; idempotent so etcd can bind to it before boot."""
    if not _link_exists(lay.bridge):
        _run(["ip", "link", "add", lay.bridge, "type", "bridge"])
    addrs = _run(["ip", "-4", "-o", "addr", "show", "dev", lay.bridge]).stdout
    if f" {lay.host_ip}/24 " not in addrs:
        _run(["ip", "addr", "add", f"{lay.host_ip}/24", "dev", lay.bridge])
    _run(["ip", "link", "set", lay.bridge, "up"])


def _hosts_file(lay: Layout, nodes: Sequence[tuple[str, str]]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines.append(f"{lay.host_ip} {lay.prefix}-host")
    lines += [f"{ip} {name}" for name, ip in nodes]
    return "\n".join(lines) + "\n"


def _write_upper(lay: Layout, spec: NodeSpec, upper: Path, hosts: str, cluster_pub: str) -> str:
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
    host_key = _keygen(ssh / "ssh_host_ed25519_key", f"root@{spec.name}")
    (ssh / "sshd_config").write_text(_SSHD_CONFIG)
    (ssh / "authorized_keys").write_text(cluster_pub + "\n")
    (ssh / "authorized_keys").chmod(0o600)
    (system / "sshd.service").unlink(missing_ok=True)  # the host's may be an alias symlink
    (system / "sshd.service").write_text(_SSHD_UNIT)
    wants = system / f"{NODE_TARGET}.wants" / "sshd.service"
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/sshd.service")
    return host_key


def _prepare_fs(lay: Layout, spec: NodeSpec, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", f"mode=755,size={lay.tmpfs}", f"fleet-{spec.name}", str(d)])
    for sub in ("upper", "work", "root", "dbus"):
        (d / sub).mkdir()
    # lowerdir=/ shows only the root file system, without /proc, /dev, /tmp... submounts;
    # upper and work must sit on another file system (the tmpfs) for overlayfs to accept it.
    opts = f"lowerdir=/,upperdir={d}/upper,workdir={d}/work"
    _run(["mount", "-t", "overlay", f"overlay-{spec.name}", "-o", opts, str(d / "root")])


def _prepare_net(lay: Layout, spec: NodeSpec) -> None:
    name = spec.name
    if name not in _netns_names():
        _run(["ip", "netns", "add", name])
        veth = ["ip", "link", "add", f"vh-{name}", "type", "veth"]
        _run([*veth, "peer", "name", "eth0", "netns", name])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(["ip", "-n", name, "addr", "add", f"{spec.ip}/24", "dev", "eth0"])
        _run(["ip", "-n", name, "link", "set", "eth0", "up"])
        _run(["ip", "link", "set", f"vh-{name}", "master", lay.bridge, "up"])


_SPAWN = (
    # Runs in the machine's cgroups, so the nspawn it forks starts there too (with
    # --keep-unit nspawn makes <own cgroup>/payload: a shared cgroup would collide).
    # The nspawn is not our child, so a short-lived caller leaves no zombie behind.
    'pidfile=$1; shift; for c in "$@"; do [ "$c" = -- ] && break; echo $$ > "$c/cgroup.procs"; '
    'shift; done; shift; "$@" </dev/null & echo $! > "$pidfile"'
)


def _spawn(spec: NodeSpec, d: Path) -> int:
    cgroups = _cgroups(spec.name)
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)
    argv = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        f"--directory={d}/root",
        f"--machine={spec.name}",
        f"--hostname={spec.name}",
        f"--uuid={spec.machine_id}",
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path=/run/netns/{spec.name}",
        f"--bind={d}/dbus:/run/dbus",
        *(f"--bind-ro={b}" for b in project_binds()),
        "--console=read-only",
    ]
    pidfile = d / "nspawn.pid"
    pidfile.unlink(missing_ok=True)
    with open(d / "console.log", "ab") as log:
        subprocess.run(
            ["sh", "-c", _SPAWN, "spawn", str(pidfile), *map(str, cgroups), "--", *argv],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            check=True,
        )
    return int(pidfile.read_text())


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


def _leader(name: str) -> int:
    """Host PID of the machine's systemd (its PID 1)."""
    for cg in _cgroups(name):
        scope = cg / "payload" / "init.scope" / "cgroup.procs"
        with contextlib.suppress(OSError, ValueError):
            first = scope.read_text().split()
            if first:
                return int(first[0])
    for cg in _cgroups(name):
        for pid in _cgroup_pids(cg):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    ids = line.split()
                    if ids[0] == "NSpid:" and len(ids) > 2 and ids[-1] == "1":
                        return pid
    return 0


def _register_machine(node: Node) -> None:
    # `systemctl -M`, `busctl -M`, `systemd-run -M` read only LEADER= from this
    # file; without machined on the host nobody else writes it.
    MACHINES_DIR.mkdir(parents=True, exist_ok=True)
    (MACHINES_DIR / node.name).write_text(
        f"NAME={node.name}\nLEADER={node.leader_pid}\nCLASS=container\n"
        f"STATE=running\nROOT={node.root}\n"
    )


def _wait_running(nodes: Sequence[Node], timeout: float) -> None:
    """Until every machine's manager says running/degraded over its own bus."""
    pending = {n.name: n for n in nodes}
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while pending:
        for name, node in list(pending.items()):
            state = system_state(node.bus)
            last[name] = state
            if state in ("running", "degraded"):
                del pending[name]
            elif not _is_nspawn(node.nspawn_pid, name):
                raise FleetError(f"{name}: systemd-nspawn exited during boot\n{_tail(node)}")
        if not pending:
            return
        if time.monotonic() > deadline:
            name = next(iter(pending))
            raise Timeout(
                f"{name}: not up after {timeout:.0f}s (state {last.get(name)!r})\n"
                f"{_tail(pending[name])}"
            )
        time.sleep(0.1)


def _tail(node: Node, lines: int = 20) -> str:
    try:
        return "\n".join((node.dir / "console.log").read_text().splitlines()[-lines:])
    except OSError:
        return ""


def _node_for(lay: Layout, spec: NodeSpec, host_key: str) -> Node:
    d = lay.state_dir / spec.name
    return Node(
        name=spec.name,
        ip=spec.ip,
        netns=spec.name,
        machine_id=spec.machine_id,
        bus=f"unix:path={d}/dbus/system_bus_socket",
        leader_pid=0,
        nspawn_pid=0,
        root=d / "root",
        dir=d,
        index=spec.index,
        host_key=host_key,
    )


def _create(
    lay: Layout,
    spec: NodeSpec,
    hosts: str,
    cluster_pub: str,
    setup: Callable[[NodeSpec, Path], None] | None,
) -> Node:
    d = lay.state_dir / spec.name
    _prepare_fs(lay, spec, d)
    host_key = _write_upper(lay, spec, d / "upper", hosts, cluster_pub)
    if setup is not None:
        setup(spec, d / "upper")
    _prepare_net(lay, spec)
    node = _node_for(lay, spec, host_key)
    node.nspawn_pid = _spawn(spec, d)
    return node


def _finish_boot(nodes: Sequence[Node], timeout: float) -> None:
    _wait_running(nodes, timeout)
    for node in nodes:
        node.leader_pid = _leader(node.name)
        if node.leader_pid == 0:
            raise FleetError(f"{node.name}: booted but its systemd PID was not found")
        _register_machine(node)


def _spec(lay: Layout, index: int) -> NodeSpec:
    return NodeSpec(
        name=lay.node_name(index),
        index=index,
        ip=lay.node_ip(index),
        host_ip=lay.host_ip,
        machine_id=uuid.uuid4().hex,
    )


def _cluster_pub(state_dir: Path) -> str:
    key = state_dir / CLUSTER_KEY
    if key.exists() and key.with_name(CLUSTER_KEY + ".pub").exists():
        return key.with_name(CLUSTER_KEY + ".pub").read_text().strip()
    return _keygen(key, "fleet-cluster")


def boot(
    count: int,
    *,
    state_dir: Path = DEFAULT_STATE_DIR,
    prefix: str = "fleet",
    subnet: str = "10.251.0",
    bridge: str = "fleetbr0",
    tmpfs: str = "512m",
    timeout: float = 90,
    setup: Callable[[NodeSpec, Path], None] | None = None,
) -> list[Node]:
    """Boot ``count`` machines in parallel; on any failure tear everything down.

    Leftovers of an earlier run with the same layout (a killed process leaves
    mounts, netns, cgroups) are removed first. The bridge is reused if it
    exists, so etcd may already listen on the host address. Console logs of a
    failed boot are kept in ``<state_dir>.failed/``.
    """
    check_host()
    if not 1 <= count <= 200:
        raise FleetError(f"machine count {count}: must be 1..200")
    lay = Layout(Path(state_dir), prefix, subnet, bridge, tmpfs)
    lay.check()
    _remove_nodes(lay, _leftover_names(lay), keep_logs=None)
    lay.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_bridge(lay)
    cluster_pub = _cluster_pub(lay.state_dir)
    specs = [_spec(lay, i) for i in range(1, count + 1)]
    hosts = _hosts_file(lay, [(s.name, s.ip) for s in specs])
    nodes: list[Node] = []
    try:
        with _locked(lay.state_dir):
            _write_state(_State(lay, []))
        with ThreadPoolExecutor(max_workers=min(8, count)) as pool:
            futures = [pool.submit(_create, lay, s, hosts, cluster_pub, setup) for s in specs]
            for fut in futures:
                nodes.append(fut.result())
        _finish_boot(nodes, timeout)
        with _locked(lay.state_dir):
            _write_state(_State(lay, nodes))
    except BaseException:
        teardown(lay.state_dir, prefix, bridge, keep_logs=Path(f"{lay.state_dir}.failed"))
        raise
    return nodes


def add(
    state_dir: Path = DEFAULT_STATE_DIR,
    *,
    timeout: float = 90,
    setup: Callable[[NodeSpec, Path], None] | None = None,
) -> Node:
    """Boot one more machine into an existing cluster (next free index)."""
    check_host()
    with _locked(state_dir):
        state = _read_state(state_dir)
        if state is None:
            raise NotFound(f"no cluster in {state_dir}")
        lay = state.layout
        index = max((n.index for n in state.nodes), default=0) + 1
        spec = _spec(lay, index)
        hosts = _hosts_file(lay, [(n.name, n.ip) for n in state.nodes] + [(spec.name, spec.ip)])
        for other in state.nodes:
            # through the merged dir: the running machine sees the change at once
            (other.root / "etc/hosts").write_text(hosts)
        node = _create(lay, spec, hosts, _cluster_pub(state_dir), setup)
        state.nodes.append(node)
        _write_state(state)
    try:
        _finish_boot([node], timeout)
    except BaseException:
        _remove_nodes(lay, [node.name], keep_logs=Path(f"{state_dir}.failed"))
        with _locked(state_dir):
            state = _read_state(state_dir)
            if state is not None:
                state.nodes = [n for n in state.nodes if n.name != node.name]
                _write_state(state)
        raise
    _update_node(state_dir, node)
    return node


# ---------------------------------------------------------------- power operations


def _state_dir_of(node: Node) -> Path:
    return node.dir.parent


def _kill_cgroups(name: str, *, remove: bool) -> None:
    """SIGKILL whatever is left in a machine's cgroups (a reparented systemd too)."""
    for cg in _cgroups(name):
        for _ in range(50):
            pids = _cgroup_pids(cg)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if remove:
            _rmdir_tree(cg)
        else:
            for sub in (p for p in cg.iterdir() if p.is_dir()) if cg.is_dir() else ():
                _rmdir_tree(sub)


def _forget_runtime(name: str) -> None:
    # /run is not a tmpfs on this host, so nspawn refuses to remove these itself.
    for sub in ("propagate", "unix-export"):
        shutil.rmtree(NSPAWN_RUN / sub / name, ignore_errors=True)
    (MACHINES_DIR / name).unlink(missing_ok=True)


def kill(node: Node) -> Node:
    """Power loss: SIGKILL every process of the machine; disks and network stay."""
    check_host()
    _kill_cgroups(node.name, remove=False)
    _forget_runtime(node.name)
    node.leader_pid = node.nspawn_pid = 0
    _update_node(_state_dir_of(node), node)
    return node


def _poweroff(pids: dict[str, int], grace: float) -> None:
    """SIGTERM to nspawn is a clean poweroff; a machine still booting may miss it: repeat."""
    live = {n: p for n, p in pids.items() if _is_nspawn(p, n)}
    for pid in live.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    resend = time.monotonic() + 2
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = {n: p for n, p in live.items() if _is_nspawn(p, n)}
        if time.monotonic() > resend:
            resend = time.monotonic() + 2
            for pid in live.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


def stop(node: Node, *, grace: float = 20) -> Node:
    """Clean poweroff (the machine's systemd stops its units), then make sure."""
    check_host()
    _poweroff({node.name: node.nspawn_pid}, grace)
    _kill_cgroups(node.name, remove=False)
    _forget_runtime(node.name)
    node.leader_pid = node.nspawn_pid = 0
    _update_node(_state_dir_of(node), node)
    return node


def start(node: Node, *, timeout: float = 90) -> Node:
    """Boot a powered-off machine again on its disk and address: a reboot, same machine id."""
    check_host()
    if node.running:
        raise FleetError(f"{node.name} is running")
    _kill_cgroups(node.name, remove=False)
    _forget_runtime(node.name)
    spec = NodeSpec(node.name, node.index, node.ip, "", node.machine_id)
    node.nspawn_pid = _spawn(spec, node.dir)
    _update_node(_state_dir_of(node), node)
    _finish_boot([node], timeout)
    _update_node(_state_dir_of(node), node)
    return node


def restart(node: Node, *, timeout: float = 90) -> Node:
    """Clean reboot."""
    stop(node)
    return start(node, timeout=timeout)


def replace(
    node: Node,
    *,
    setup: Callable[[NodeSpec, Path], None] | None = None,
    timeout: float = 90,
) -> Node:
    """A new machine in the old one's place: fresh disk, new machine id and host key, same IP.

    Powers the old one off first if it still runs (fleet's ReplaceMember).
    """
    check_host()
    state_dir = _state_dir_of(node)
    lay = layout(state_dir)
    if node.running:
        stop(node)
    _kill_cgroups(node.name, remove=False)
    _forget_runtime(node.name)
    for point in _mounts_under(node.dir):
        _umount(point)
    if _mounts_under(node.dir):
        raise FleetError(f"{node.name}: {node.dir} is still mounted")
    shutil.rmtree(node.dir, ignore_errors=True)
    spec = NodeSpec(node.name, node.index, node.ip, lay.host_ip, uuid.uuid4().hex)
    hosts = _hosts_file(lay, [(n.name, n.ip) for n in load(state_dir)])
    new = _create(lay, spec, hosts, _cluster_pub(state_dir), setup)
    _update_node(state_dir, new)
    _finish_boot([new], timeout)
    _update_node(state_dir, new)
    return new


# ---------------------------------------------------------------- running things inside


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


# ---------------------------------------------------------------- teardown


def _leftover_names(lay: Layout) -> list[str]:
    """Machines of this layout that exist in any form: state, cgroups, netns, dirs."""
    pattern = re.compile(rf"{re.escape(lay.prefix)}\d+")
    names: set[str] = set()
    state = None
    with contextlib.suppress(FleetError):
        state = _read_state(lay.state_dir)
    if state is not None:
        names.update(n.name for n in state.nodes)
    for root in _cgroup_roots():
        group = root / CGROUP_GROUP
        if group.is_dir():
            names.update(p.name for p in group.iterdir() if pattern.fullmatch(p.name))
    names.update(n for n in _netns_names() if pattern.fullmatch(n))
    if lay.state_dir.is_dir():
        names.update(p.name for p in lay.state_dir.iterdir() if pattern.fullmatch(p.name))
    return sorted(names)


def _remove_nodes(lay: Layout, names: Sequence[str], keep_logs: Path | None) -> None:
    pids: dict[str, int] = {}
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            pids[name] = int((lay.state_dir / name / "nspawn.pid").read_text())
    _poweroff(pids, grace=20)
    for name in names:
        _kill_cgroups(name, remove=True)
        d = lay.state_dir / name
        if keep_logs is not None and (d / "console.log").exists():
            keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(d / "console.log", keep_logs / f"{name}.console.log")
        for point in _mounts_under(d):
            _umount(point)
        _run(["ip", "netns", "del", name], check=False)  # takes its veth pair along
        if _link_exists(f"vh-{name}"):
            _run(["ip", "link", "del", f"vh-{name}"], check=False)
        if d.exists() and not _mounts_under(d):
            shutil.rmtree(d, ignore_errors=True)
        _forget_runtime(name)
    for root in _cgroup_roots():
        with contextlib.suppress(OSError):
            (root / CGROUP_GROUP).rmdir()  # fails while another cluster uses it: fine


def teardown(
    state_dir: Path = DEFAULT_STATE_DIR,
    prefix: str = "fleet",
    bridge: str = "fleetbr0",
    *,
    keep_logs: Path | None = None,
) -> None:
    """Remove every trace of a cluster; safe to run twice and after a half-failed boot."""
    check_host()
    state_dir = Path(state_dir)
    lay = Layout(state_dir, prefix, bridge=bridge)
    state = None
    with contextlib.suppress(FleetError):
        state = _read_state(state_dir)
    if state is not None:
        lay = state.layout
    _remove_nodes(lay, _leftover_names(lay), keep_logs)
    if _link_exists(lay.bridge):
        _run(["ip", "link", "del", lay.bridge], check=False)
    if state_dir.exists():
        if _mounts_under(state_dir):
            raise FleetError(f"{state_dir}: mounts remain, not removing it")
        shutil.rmtree(state_dir, ignore_errors=True)
