"""The ``fleet-cluster`` entry point: a local fleet cluster in one command (feature B10).

It holds the click group every command hangs on, the one place a
:class:`~fleet.errors.FleetError` becomes one line on stderr with its exit
code. The commands live by what they act on: the whole cluster
(:mod:`fleet.cluster.cli_cluster`), one machine
(:mod:`fleet.cluster.cli_machine`), a root file system to provision
(:mod:`fleet.cluster.cli_provision`). Every command but ``provision`` and
``env`` needs root on Linux and says so in one line otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from fleet.cluster import cli_cluster, cli_machine, cli_provision, nodes
from fleet.errors import FleetError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=nodes.DEFAULT_STATE_DIR,
    show_default=True,
    envvar="FLEET_CLUSTER_STATE_DIR",
    help="Where the cluster keeps its state (keep it short: unix socket paths).",
)
@click.pass_context
def cli(ctx: click.Context, state_dir: Path) -> None:
    """A local fleet cluster: etcd plus N real systemd machines (systemd-nspawn)."""
    ctx.obj = state_dir.absolute()


cli.add_command(cli_cluster.up)
cli.add_command(cli_cluster.down)
cli.add_command(cli_cluster.status)
cli.add_command(cli_cluster.env)
cli.add_command(cli_cluster.etcd)
cli.add_command(cli_machine.exec_)
cli.add_command(cli_machine.kill_)
cli.add_command(cli_machine.restart)
cli.add_command(cli_machine.replace)
cli.add_command(cli_machine.add)
cli.add_command(cli_provision.provision)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``fleet-cluster``: one line on stderr and exit 1 for every FleetError."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="fleet-cluster",
            standalone_mode=False,
        )
    except FleetError as exc:
        click.echo(f"fleet-cluster: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("fleet-cluster: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
