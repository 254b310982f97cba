"""fleetctl's SSH client, on paramiko. No command talks SSH itself: the context
opens an :class:`SSHConnection` (to the ``--tunnel`` bastion, or to a machine
for ``ssh``, ``status``, ``journal``); the drivers carry their traffic over it
with :func:`tunnel_transport` (HTTP) or :class:`LocalForward` (etcd's gRPC).
Importing this package loads paramiko, so only SSH paths import it, inside the
function that needs it. It imports no other fleetctl module: :class:`SSHSettings`
is its own, built by :meth:`fleetctl.client.ClientSettings.ssh_settings`.
"""

from __future__ import annotations

from fleetctl.ssh.addresses import DEFAULT_PORT, join_host_port, split_host_port
from fleetctl.ssh.connection import SSHConnection
from fleetctl.ssh.forwarding import LocalForward
from fleetctl.ssh.known_hosts import KnownHosts, known_hosts_id, verify_host_key
from fleetctl.ssh.settings import SSHSettings
from fleetctl.ssh.transport import FD_FORWARD_COMMAND, tunnel_transport

__all__ = [
    "DEFAULT_PORT",
    "FD_FORWARD_COMMAND",
    "KnownHosts",
    "LocalForward",
    "SSHConnection",
    "SSHSettings",
    "join_host_port",
    "known_hosts_id",
    "split_host_port",
    "tunnel_transport",
    "verify_host_key",
]
