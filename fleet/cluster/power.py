"""Power operations on a cluster's machines: power cut, clean poweroff, reboot, replacement.

Each keeps the state file in step with what runs. A powered-off machine keeps
its tmpfs (its disk), its address, its machine id, so booting it again is a
reboot; :func:`replace` instead gives the same name a fresh machine, as
fleet's ReplaceMember does to a cluster member.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from fleet.cluster.boot import cluster_public_key, create, finish_boot, spawn
from fleet.cluster.footprint import forget_runtime, kill_cgroups, mounts_under, poweroff, umount
from fleet.cluster.host import check_host
from fleet.cluster.image import NodeSpec, hosts_file
from fleet.cluster.state import Node, layout, load, update_node
from fleet.errors import FleetError


def _state_dir_of(node: Node) -> Path:
    return node.dir.parent


def kill(node: Node) -> Node:
    """Power loss: SIGKILL every process of the machine; disks and network stay."""
    check_host()
    kill_cgroups(node.name, remove=False)
    forget_runtime(node.name)
    node.leader_pid = node.nspawn_pid = 0
    update_node(_state_dir_of(node), node)
    return node


def stop(node: Node, *, grace: float = 20) -> Node:
    """Clean poweroff (the machine's systemd stops its units), then make sure."""
    check_host()
    poweroff({node.name: node.nspawn_pid}, grace)
    kill_cgroups(node.name, remove=False)
    forget_runtime(node.name)
    node.leader_pid = node.nspawn_pid = 0
    update_node(_state_dir_of(node), node)
    return node


def start(node: Node, *, timeout: float = 90) -> Node:
    """Boot a powered-off machine again on its disk and address: a reboot, same machine id."""
    check_host()
    if node.running:
        raise FleetError(f"{node.name} is running")
    kill_cgroups(node.name, remove=False)
    forget_runtime(node.name)
    spec = NodeSpec(node.name, node.index, node.ip, "", node.machine_id)
    node.nspawn_pid = spawn(spec, node.dir)
    update_node(_state_dir_of(node), node)
    finish_boot([node], timeout)
    update_node(_state_dir_of(node), node)
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
    kill_cgroups(node.name, remove=False)
    forget_runtime(node.name)
    for point in mounts_under(node.dir):
        umount(point)
    if mounts_under(node.dir):
        raise FleetError(f"{node.name}: {node.dir} is still mounted")
    shutil.rmtree(node.dir, ignore_errors=True)
    spec = NodeSpec(node.name, node.index, node.ip, lay.host_ip, uuid.uuid4().hex)
    hosts = hosts_file(lay, [(n.name, n.ip) for n in load(state_dir)])
    new = create(lay, spec, hosts, cluster_public_key(state_dir), setup)
    update_node(state_dir, new)
    finish_boot([new], timeout)
    update_node(state_dir, new)
    return new
