"""``fleetctl fd-forward SOCKET``, the command the far side of ``--tunnel`` runs;
the splice itself is :func:`fleetctl.fdforward.fd_forward`, imported only when
the command runs."""

from __future__ import annotations

import sys

import click


@click.command(
    "fd-forward",
    help="Proxy stdin and stdout to a unix domain socket (used on the far side of --tunnel).",
)
@click.argument("socket_path", metavar="SOCKET")
def fd_forward(socket_path: str) -> int:
    from fleetctl.fdforward import fd_forward as forward

    sys.stdout.flush()
    forward(socket_path)
    return 0


COMMANDS = (fd_forward,)
