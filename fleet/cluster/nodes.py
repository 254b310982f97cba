"""The public face of fleet-cluster's machines: this module only re-exports.

Callers write ``from fleet.cluster import nodes``, then ``nodes.boot(...)``,
``nodes.kill(node)``, ``nodes.exec(node, argv)``. Each machine is
``systemd-nspawn --boot`` on an overlay whose lower layer is the host's ``/``
and whose upper layer lives on a per-machine tmpfs, in its own network
namespace wired to a host bridge (host at ``.1``, no default route in the
machines), in its own cgroup in every hierarchy. It runs only systemd,
journald, dbus-daemon and sshd (a small ``fleet-node.target``), plus whatever
a ``setup`` callback installs into its upper dir (fleetd, see
:mod:`fleet.cluster.provision`). The modules that do the work (``host``,
``state``, ``image``, ``boot``, ``power``, ``inside``, ``teardown``, all over
``footprint``) need nothing beyond the standard library, so a bare
``python3`` can run :func:`check_host`.
"""

from __future__ import annotations

from fleet.cluster.boot import CLUSTER_KEY, add, boot, ensure_bridge
from fleet.cluster.claims import check_free
from fleet.cluster.footprint import CGROUP_GROUP, MACHINES_DIR, NSPAWN_RUN
from fleet.cluster.host import check_host, project_binds, visible_in_machines
from fleet.cluster.image import NODE_TARGET, SSHD_DIR, NodeSpec
from fleet.cluster.inside import exec, system_state, systemctl
from fleet.cluster.power import kill, replace, restart, start, stop
from fleet.cluster.state import (
    DEFAULT_STATE_DIR,
    STATE_FILE,
    Layout,
    Node,
    find,
    known_hosts_path,
    layout,
    load,
)
from fleet.cluster.teardown import teardown

__all__ = [
    "CGROUP_GROUP",
    "CLUSTER_KEY",
    "DEFAULT_STATE_DIR",
    "MACHINES_DIR",
    "NODE_TARGET",
    "NSPAWN_RUN",
    "SSHD_DIR",
    "STATE_FILE",
    "Layout",
    "Node",
    "NodeSpec",
    "add",
    "boot",
    "check_free",
    "check_host",
    "ensure_bridge",
    "exec",
    "find",
    "kill",
    "known_hosts_path",
    "layout",
    "load",
    "project_binds",
    "replace",
    "restart",
    "start",
    "stop",
    "system_state",
    "systemctl",
    "teardown",
    "visible_in_machines",
]
