"""Bringing machines up, from an empty tmpfs to a systemd that says "running".

A machine is built in parallel with its peers: a tmpfs holding the overlay's
upper layer (:mod:`fleet.cluster.image`), a network namespace with a veth on
the host bridge, then ``systemd-nspawn --boot`` started in the machine's own
cgroups. The host need not run systemd (no machined to register with), so
nspawn runs with ``--register=no --keep-unit``; once the machine's systemd
is up, the machine file that ``systemctl -M NAME`` reads is written by hand.
A boot that fails anywhere is torn down completely, keeping only the
machines' console logs.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fleet.cluster.claims import claim
from fleet.cluster.footprint import (
    cgroup_pids,
    is_nspawn,
    link_exists,
    machine_cgroups,
    netns_names,
    register_machine,
    run,
)
from fleet.cluster.host import check_host, project_binds
from fleet.cluster.image import NodeSpec, hosts_file, keygen, write_upper
from fleet.cluster.inside import system_state
from fleet.cluster.state import (
    DEFAULT_STATE_DIR,
    Layout,
    Node,
    State,
    locked,
    read_state,
    update_node,
    write_state,
)
from fleet.cluster.teardown import leftover_names, remove_nodes, teardown
from fleet.errors import FleetError, NotFound, Timeout

CLUSTER_KEY = "id_ed25519"  # in the state dir: the key every machine's sshd accepts for root


def ensure_bridge(lay: Layout) -> None:
    """The host side of the network; idempotent so etcd can bind to it before boot.
    Claims the layout first: FleetError if another live cluster uses it."""
    claim(lay)
    if not link_exists(lay.bridge):
        run(["ip", "link", "add", lay.bridge, "type", "bridge"])
    addrs = run(["ip", "-4", "-o", "addr", "show", "dev", lay.bridge]).stdout
    if f" {lay.host_ip}/24 " not in addrs:
        run(["ip", "addr", "add", f"{lay.host_ip}/24", "dev", lay.bridge])
    run(["ip", "link", "set", lay.bridge, "up"])


def _prepare_fs(lay: Layout, spec: NodeSpec, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", f"mode=755,size={lay.tmpfs}", f"fleet-{spec.name}", str(d)])
    for sub in ("upper", "work", "root", "dbus"):
        (d / sub).mkdir()
    # lowerdir=/ shows only the root file system, without /proc, /dev, /tmp... submounts;
    # upper and work must sit on another file system (the tmpfs) for overlayfs to accept it.
    opts = f"lowerdir=/,upperdir={d}/upper,workdir={d}/work"
    run(["mount", "-t", "overlay", f"overlay-{spec.name}", "-o", opts, str(d / "root")])


def _prepare_net(lay: Layout, spec: NodeSpec) -> None:
    name = spec.name
    if name not in netns_names():
        run(["ip", "netns", "add", name])
        veth = ["ip", "link", "add", f"vh-{name}", "type", "veth"]
        run([*veth, "peer", "name", "eth0", "netns", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        run(["ip", "-n", name, "addr", "add", f"{spec.ip}/24", "dev", "eth0"])
        run(["ip", "-n", name, "link", "set", "eth0", "up"])
        run(["ip", "link", "set", f"vh-{name}", "master", lay.bridge, "up"])


_SPAWN = (
    # Runs in the machine's cgroups, so the nspawn it forks starts there too (with
    # --keep-unit nspawn makes <own cgroup>/payload: a shared cgroup would collide).
    # The nspawn is not our child, so a short-lived caller leaves no zombie behind.
    'pidfile=$1; shift; for c in "$@"; do [ "$c" = -- ] && break; echo $$ > "$c/cgroup.procs"; '
    'shift; done; shift; "$@" </dev/null & echo $! > "$pidfile"'
)


def spawn(spec: NodeSpec, d: Path) -> int:
    cgroups = machine_cgroups(spec.name)
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
    pid = int(pidfile.read_text())
    _wait_exec(pid, spec.name)
    return pid


def _wait_exec(pid: int, name: str, timeout: float = 10.0) -> None:
    """Until the forked shell has become systemd-nspawn: until then its command line
    is the shell's, and a check of "is our nspawn still there" would say no (on a
    loaded host the fork-to-exec gap was long enough to fail a boot)."""
    deadline = time.monotonic() + timeout
    while not is_nspawn(pid, name):
        if not Path(f"/proc/{pid}").exists():
            return  # exited already: the boot's own checks report it with the console log
        if time.monotonic() > deadline:
            raise FleetError(f"{name}: systemd-nspawn did not start within {timeout:g}s")
        time.sleep(0.005)


def _leader(name: str) -> int:
    """Host PID of the machine's systemd (its PID 1)."""
    for cg in machine_cgroups(name):
        scope = cg / "payload" / "init.scope" / "cgroup.procs"
        with contextlib.suppress(OSError, ValueError):
            first = scope.read_text().split()
            if first:
                return int(first[0])
    for cg in machine_cgroups(name):
        for pid in cgroup_pids(cg):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    ids = line.split()
                    if ids[0] == "NSpid:" and len(ids) > 2 and ids[-1] == "1":
                        return pid
    return 0


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
            elif not is_nspawn(node.nspawn_pid, name):
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


def create(
    lay: Layout,
    spec: NodeSpec,
    hosts: str,
    cluster_pub: str,
    setup: Callable[[NodeSpec, Path], None] | None,
) -> Node:
    d = lay.state_dir / spec.name
    _prepare_fs(lay, spec, d)
    host_key = write_upper(lay, spec, d / "upper", hosts, cluster_pub)
    if setup is not None:
        setup(spec, d / "upper")
    _prepare_net(lay, spec)
    node = _node_for(lay, spec, host_key)
    node.nspawn_pid = spawn(spec, d)
    return node


def finish_boot(nodes: Sequence[Node], timeout: float) -> None:
    _wait_running(nodes, timeout)
    for node in nodes:
        node.leader_pid = _leader(node.name)
        if node.leader_pid == 0:
            raise FleetError(f"{node.name}: booted but its systemd PID was not found")
        register_machine(node.name, node.leader_pid, node.root)


def _spec(lay: Layout, index: int) -> NodeSpec:
    return NodeSpec(
        name=lay.node_name(index),
        index=index,
        ip=lay.node_ip(index),
        host_ip=lay.host_ip,
        machine_id=uuid.uuid4().hex,
    )


def cluster_public_key(state_dir: Path) -> str:
    key = state_dir / CLUSTER_KEY
    if key.exists() and key.with_name(CLUSTER_KEY + ".pub").exists():
        return key.with_name(CLUSTER_KEY + ".pub").read_text().strip()
    return keygen(key, "fleet-cluster")


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
    remove_nodes(lay, leftover_names(lay), keep_logs=None)
    lay.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_bridge(lay)
    cluster_pub = cluster_public_key(lay.state_dir)
    specs = [_spec(lay, i) for i in range(1, count + 1)]
    hosts = hosts_file(lay, [(s.name, s.ip) for s in specs])
    nodes: list[Node] = []
    try:
        with locked(lay.state_dir):
            write_state(State(lay, []))
        with ThreadPoolExecutor(max_workers=min(8, count)) as pool:
            futures = [pool.submit(create, lay, s, hosts, cluster_pub, setup) for s in specs]
            for fut in futures:
                nodes.append(fut.result())
        finish_boot(nodes, timeout)
        with locked(lay.state_dir):
            write_state(State(lay, nodes))
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
    with locked(state_dir):
        state = read_state(state_dir)
        if state is None:
            raise NotFound(f"no cluster in {state_dir}")
        lay = state.layout
        index = max((n.index for n in state.nodes), default=0) + 1
        spec = _spec(lay, index)
        hosts = hosts_file(lay, [(n.name, n.ip) for n in state.nodes] + [(spec.name, spec.ip)])
        for other in state.nodes:
            # through the merged dir: the running machine sees the change at once
            (other.root / "etc/hosts").write_text(hosts)
        node = create(lay, spec, hosts, cluster_public_key(state_dir), setup)
        state.nodes.append(node)
        write_state(state)
    try:
        finish_boot([node], timeout)
    except BaseException:
        remove_nodes(lay, [node.name], keep_logs=Path(f"{state_dir}.failed"))
        with locked(state_dir):
            state = read_state(state_dir)
            if state is not None:
                state.nodes = [n for n in state.nodes if n.name != node.name]
                write_state(state)
        raise
    update_node(state_dir, node)
    return node
