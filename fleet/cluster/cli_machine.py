"""The commands that act on one machine of a running cluster.

``exec`` runs a command in it, ``kill`` cuts its power, ``restart`` reboots it
(or boots a killed one), ``replace`` puts a fresh machine in its place,
``add`` boots one more. A machine is named as ``fleet-cluster status`` shows
it: name, IP or a machine id prefix. Progress goes to stderr; stdout carries
only what a caller consumes (an exec'd command's output, the new machine's
line).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from fleet.cluster import nodes
from fleet.cluster.config import ClusterConfig
from fleet.cluster.provision import parse_metadata
from fleet.cluster.registration import presence_leases, wait_registered, wait_reregistered


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("machine")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(state_dir: Path, machine: str, argv: tuple[str, ...]) -> None:
    """Run a command in a machine (`exec fleet1 -- systemctl status`); its exit code is ours."""
    nodes.check_host()
    node = nodes.find(state_dir, machine)
    proc = nodes.exec(node, list(argv), timeout=None, capture=False)
    sys.exit(proc.returncode)


@click.command(name="kill")
@click.argument("machine")
@click.pass_obj
def kill_(state_dir: Path, machine: str) -> None:
    """Power loss: SIGKILL everything in the machine (start it with `restart`)."""
    nodes.check_host()
    node = nodes.kill(nodes.find(state_dir, machine))
    click.echo(f"{node.name} killed", err=True)


@click.command()
@click.argument("machine")
@click.pass_obj
def restart(state_dir: Path, machine: str) -> None:
    """Reboot a machine (or boot a killed one); same disk, same machine id. Waits for its
    fleetd to register again."""
    nodes.check_host()
    cfg = ClusterConfig.load(state_dir)
    node = nodes.find(state_dir, machine)
    started = time.monotonic()
    before = presence_leases(cfg.etcd_endpoint, cfg.key_prefix).get(node.machine_id)
    node = nodes.restart(node) if node.running else nodes.start(node)
    if cfg.fleetd:
        wait_reregistered(cfg.etcd_endpoint, node.machine_id, before, cfg.key_prefix, 90)
    click.echo(f"{node.name} up again in {time.monotonic() - started:.1f}s", err=True)


@click.command()
@click.argument("machine")
@click.pass_obj
def replace(state_dir: Path, machine: str) -> None:
    """A new machine in its place: new machine id and host key, same name and IP."""
    nodes.check_host()
    cfg = ClusterConfig.load(state_dir)
    old = nodes.find(state_dir, machine)
    node = nodes.replace(old, setup=cfg.setup())
    click.echo(f"{node.name}: machine id {old.machine_id} -> {node.machine_id}", err=True)
    if cfg.fleetd:
        wait_registered(cfg.etcd_endpoint, [node.machine_id], cfg.key_prefix, 90)


@click.command()
@click.option("--metadata", default="", help="k=v,k2=v2 for the new machine.")
@click.pass_obj
def add(state_dir: Path, metadata: str) -> None:
    """Boot one more machine into the cluster."""
    nodes.check_host()
    cfg = ClusterConfig.load(state_dir)
    lay = nodes.layout(state_dir)
    name = lay.node_name(max((n.index for n in nodes.load(state_dir)), default=0) + 1)
    cfg.metadata[name] = parse_metadata(metadata) if metadata else cfg.default_metadata
    cfg.save(state_dir)
    node = nodes.add(state_dir, setup=cfg.setup())
    if cfg.fleetd:
        wait_registered(cfg.etcd_endpoint, [node.machine_id], cfg.key_prefix, 90)
    click.echo(f"{node.name} {node.ip} {node.machine_id}")
