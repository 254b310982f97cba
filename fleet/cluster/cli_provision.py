"""The ``provision`` command: fleetd installed into a root file system, nothing started.

Needs neither root nor a cluster: Vagrant runs it inside each VM on its
``/`` (``python -m fleet.cluster provision``).
"""

from __future__ import annotations

from pathlib import Path

import click

from fleet.cluster.provision import UNITS_DIR, parse_metadata, provision_machine
from fleet.errors import InvalidConfig


@click.command()
@click.option("--root", type=click.Path(path_type=Path), default=Path("/"), show_default=True)
@click.option("--etcd-servers", required=True, help="Comma-separated etcd endpoints.")
@click.option("--public-ip", default=None)
@click.option("--metadata", default="", help="k=v,k2=v2")
@click.option("--agent-ttl", default="30s", show_default=True)
@click.option("--fleetd", "fleetd_path", type=click.Path(path_type=Path), default=None)
@click.option("--api-port", type=int, default=None, help="Also install fleet-tcp.socket.")
@click.option("--restart-sec", default=None, help="Drop-in overriding fleet's RestartSec=10s.")
@click.option("--config", "extra", multiple=True, help="extra fleet.conf key=value.")
@click.option(
    "--units-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=UNITS_DIR,
    show_default=True,
    help="Where fleet.service and the sockets are (the checkout's units/).",
)
def provision(
    *,
    root: Path,
    etcd_servers: str,
    public_ip: str | None,
    metadata: str,
    agent_ttl: str,
    fleetd_path: Path | None,
    api_port: int | None,
    restart_sec: str | None,
    extra: tuple[str, ...],
    units_dir: Path,
) -> None:
    """Install fleet.conf and fleet's units into ROOT (a VM's `/`); starts nothing."""
    extra_config: dict[str, str] = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidConfig(f"--config {item!r}: expected key=value")
        extra_config[key.strip()] = value.strip()
    written = provision_machine(
        root,
        etcd_servers=[s.strip() for s in etcd_servers.split(",") if s.strip()],
        public_ip=public_ip,
        metadata=parse_metadata(metadata),
        agent_ttl=agent_ttl,
        extra_config=extra_config,
        fleet_bin=fleetd_path.absolute() if fleetd_path else None,
        api_port=api_port,
        restart_sec=restart_sec,
        units_dir=units_dir,
    )
    for path in written:
        click.echo(str(path))
