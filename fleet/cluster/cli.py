"""``fleet-cluster``: a local fleet cluster in one command (feature B10).

Owns the command line and the cluster-level state (``cluster.json``: where
etcd runs, how fleetd was provisioned) on top of :mod:`fleet.cluster.nodes`
(the machines) and :mod:`fleet.cluster.provision` (fleetd inside them). Every
command but ``provision`` and ``env`` needs root on Linux and says so in one
line otherwise. Progress goes to stderr; stdout carries only what a caller
consumes (the ``eval`` lines, the status table, an exec'd command's output).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from fleet.cluster import nodes
from fleet.cluster.etcd import EtcdProcess
from fleet.cluster.provision import (
    UNITS_DIR,
    default_fleetd,
    fleet_conf,
    parse_metadata,
    provision_machine,
)
from fleet.errors import FleetError, InvalidConfig, NotFound, Timeout
from fleet.registry.keys import DEFAULT_PREFIX as DEFAULT_KEY_PREFIX

CLUSTER_FILE = "cluster.json"
DEFAULT_API_PORT = 54728


@dataclass
class ClusterConfig:
    """What ``up`` decided; ``replace``/``add`` provision new machines the same way."""

    etcd_endpoint: str
    etcd_pid_file: str
    fleetd: bool
    fleetd_path: str
    agent_ttl: str
    key_prefix: str
    api_port: int | None
    restart_sec: str
    extra_config: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # by machine name
    default_metadata: dict[str, str] = field(default_factory=dict)

    def save(self, state_dir: Path) -> None:
        (state_dir / CLUSTER_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> ClusterConfig:
        try:
            return cls(**json.loads((state_dir / CLUSTER_FILE).read_text()))
        except FileNotFoundError as exc:
            raise FleetError(f"no cluster in {state_dir}: run `fleet-cluster up` first") from exc

    def machine_metadata(self, name: str) -> dict[str, str]:
        # fleet's own harness gave every member hostname=<its hostname>
        # (hello-metadata@.service and friends rely on it).
        chosen = self.metadata.get(name, self.default_metadata)
        return {"hostname": name, **chosen}

    def setup(self) -> Callable[[nodes.NodeSpec, Path], None] | None:
        if not self.fleetd:
            return None

        def provision(spec: nodes.NodeSpec, upper: Path) -> None:
            provision_machine(
                upper,
                etcd_servers=[self.etcd_endpoint],
                public_ip=spec.ip,
                metadata=self.machine_metadata(spec.name),
                agent_ttl=self.agent_ttl,
                extra_config={"etcd_key_prefix": self.key_prefix, **self.extra_config},
                fleet_bin=Path(self.fleetd_path),
                api_port=self.api_port,
                restart_sec=self.restart_sec,
            )

        return provision


# ---------------------------------------------------------------- helpers used by tests too


def registered_machines(endpoint: str, key_prefix: str = DEFAULT_KEY_PREFIX) -> set[str]:
    """Machine ids with a ``<prefix>machine/<id>`` key (fleetd's presence, leased)."""
    prefix = key_prefix.rstrip("/") + "/machine/"
    proc = subprocess.run(
        ["etcdctl", f"--endpoints={endpoint}", "get", "--prefix", "--keys-only", prefix],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=10,
        check=False,
    )
    if proc.returncode != 0:
        return set()
    keys = (line.strip() for line in proc.stdout.splitlines())
    return {k[len(prefix) :].split("/")[0] for k in keys if k.startswith(prefix)}


def wait_registered(
    endpoint: str, machine_ids: Sequence[str], key_prefix: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    wanted = set(machine_ids)
    while True:
        missing = wanted - registered_machines(endpoint, key_prefix)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise Timeout(
                f"fleetd did not register within {timeout:.0f}s on: {', '.join(sorted(missing))}"
            )
        time.sleep(0.2)


def env_lines(state_dir: Path) -> list[str]:
    cfg = ClusterConfig.load(state_dir)
    key = state_dir / nodes.CLUSTER_KEY
    return [
        "export FLEETCTL_DRIVER=etcd",
        f"export FLEETCTL_ENDPOINT={cfg.etcd_endpoint}",
        f"export FLEETCTL_ETCD_KEY_PREFIX={cfg.key_prefix}",
        "export FLEETCTL_SSH_USERNAME=root",
        f"export FLEET_CLUSTER_STATE_DIR={state_dir}",
        f"# ssh to a machine: ssh-add {key}   (or ssh -i {key} root@<ip>)",
    ]


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _metadata_per_machine(values: Sequence[str], count: int) -> list[dict[str, str]]:
    parsed = [parse_metadata(v) for v in values]
    if not parsed:
        return [{} for _ in range(count)]
    if len(parsed) == 1:
        return parsed * count
    if len(parsed) != count:
        raise InvalidConfig(f"--metadata given {len(parsed)} times: give it once or {count} times")
    return parsed


def _fleetd_state(node: nodes.Node) -> str:
    if not node.running:
        return "-"
    try:
        out = nodes.systemctl(node, "is-active", "fleet.service", timeout=10).stdout.strip()
    except subprocess.TimeoutExpired:
        return "unknown"
    return out or "unknown"


# ---------------------------------------------------------------- commands


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


def _root_only() -> None:
    nodes.check_host()


@cli.command()
@click.option(
    "--machines", "-n", "count", type=click.IntRange(1, 200), default=3, show_default=True
)
@click.option("--metadata", multiple=True, help="k=v,k2=v2: once for all, or once per machine.")
@click.option("--agent-ttl", default="5s", show_default=True)
@click.option("--no-fleetd", is_flag=True, help="Only machines and etcd.")
@click.option("--fleetd", "fleetd_path", type=click.Path(path_type=Path), help="fleetd executable.")
@click.option("--etcd-port", type=int, default=2379, show_default=True, help="0: any free port.")
@click.option(
    "--api-port",
    type=int,
    default=DEFAULT_API_PORT,
    show_default=True,
    help="fleet-tcp.socket port in every machine; 0: unix socket only.",
)
@click.option("--key-prefix", default=DEFAULT_KEY_PREFIX, show_default=True)
@click.option("--config", "extra", multiple=True, help="extra fleet.conf key=value.")
@click.option("--prefix", default="fleet", show_default=True, help="Machine name prefix.")
@click.option("--subnet", default="10.251.0", show_default=True, help="First three octets.")
@click.option("--bridge", default="fleetbr0", show_default=True)
@click.option("--timeout", type=float, default=90, show_default=True)
@click.pass_obj
def up(
    state_dir: Path,
    *,
    count: int,
    metadata: tuple[str, ...],
    agent_ttl: str,
    no_fleetd: bool,
    fleetd_path: Path | None,
    etcd_port: int,
    api_port: int,
    key_prefix: str,
    extra: tuple[str, ...],
    prefix: str,
    subnet: str,
    bridge: str,
    timeout: float,
) -> None:
    """Start etcd and boot the machines, then print the lines to `eval`."""
    _root_only()
    started = time.monotonic()
    try:
        if any(n.running for n in nodes.load(state_dir)):
            raise FleetError(f"a cluster is already up in {state_dir}: `fleet-cluster down` first")
    except NotFound:
        pass
    fleetd = (fleetd_path or default_fleetd()).absolute()
    if not no_fleetd and not fleetd.exists():
        raise FleetError(f"{fleetd} not found: install the project (pip install -e .)")
    if not no_fleetd and not nodes.visible_in_machines(fleetd):
        raise FleetError(f"{fleetd} is not visible inside machines: keep fleetd off /tmp and /run")
    per_machine = _metadata_per_machine(metadata, count)
    extra_config = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidConfig(f"--config {item!r}: expected key=value")
        extra_config[key.strip()] = value.strip()
    lay = nodes.Layout(state_dir, prefix, subnet, bridge)
    lay.check()
    _down(state_dir, prefix, bridge)
    state_dir.mkdir(parents=True, exist_ok=True)
    nodes.ensure_bridge(lay)
    etcd = EtcdProcess(
        host=lay.host_ip,
        client_port=etcd_port,
        data_dir=state_dir / "etcd",
        fast=False,
        log_path=state_dir / "etcd.log",
    )
    cfg = ClusterConfig(
        etcd_endpoint="",
        etcd_pid_file=str(state_dir / "etcd.pid"),
        fleetd=not no_fleetd,
        fleetd_path=str(fleetd),
        agent_ttl=agent_ttl,
        key_prefix=key_prefix,
        api_port=api_port or None,
        restart_sec="1s",
        extra_config=extra_config,
        metadata={lay.node_name(i + 1): md for i, md in enumerate(per_machine)},
        default_metadata=per_machine[0] if len({str(m) for m in per_machine}) == 1 else {},
    )
    # Fail on a bad --agent-ttl/--metadata/--config now, not inside a booting machine.
    fleet_conf(
        etcd_servers=["http://validate"],
        public_ip=None,
        metadata=cfg.machine_metadata(lay.node_name(1)),
        agent_ttl=agent_ttl,
        extra_config=extra_config,
    )
    # etcd stays our child until the machines are up, so a failed boot (which
    # removes the state dir) still stops it; then it is detached to outlive us.
    with etcd:
        cfg.etcd_endpoint = etcd.endpoint
        cfg.save(state_dir)
        _say(f"etcd on {etcd.endpoint}; booting {count} machine(s)...")
        try:
            booted = nodes.boot(
                count,
                state_dir=state_dir,
                prefix=prefix,
                subnet=subnet,
                bridge=bridge,
                timeout=timeout,
                setup=cfg.setup(),
            )
        except BaseException:
            nodes.teardown(state_dir, prefix, bridge)
            raise
        etcd.detach(Path(cfg.etcd_pid_file))
    _say(f"{count} machine(s) up in {time.monotonic() - started:.1f}s")
    if cfg.fleetd:
        try:
            wait_registered(cfg.etcd_endpoint, [n.machine_id for n in booted], key_prefix, timeout)
        except Timeout as exc:
            raise FleetError(
                f"{exc} (the cluster stays up: `fleet-cluster exec {booted[0].name} -- "
                "journalctl -u fleet` to see why, `fleet-cluster down` to remove it)"
            ) from exc
        _say(f"fleetd registered on every machine after {time.monotonic() - started:.1f}s")
    for line in env_lines(state_dir):
        click.echo(line)


def _down(state_dir: Path, prefix: str = "fleet", bridge: str = "fleetbr0") -> None:
    try:
        cfg = ClusterConfig.load(state_dir)
        EtcdProcess.stop_detached(Path(cfg.etcd_pid_file))
    except FleetError:
        EtcdProcess.stop_detached(state_dir / "etcd.pid")
    nodes.teardown(state_dir, prefix, bridge)


@cli.command()
@click.option("--prefix", default="fleet", show_default=True, help="Used if the state is lost.")
@click.option("--bridge", default="fleetbr0", show_default=True, help="Used if the state is lost.")
@click.pass_obj
def down(state_dir: Path, prefix: str, bridge: str) -> None:
    """Stop machines and etcd; remove bridge, mounts, state: nothing is left behind."""
    _root_only()
    started = time.monotonic()
    _down(state_dir, prefix, bridge)
    _say(f"cluster in {state_dir} removed in {time.monotonic() - started:.1f}s")


@cli.command()
@click.pass_obj
def status(state_dir: Path) -> None:
    """Machines, their IP, machine id and fleetd state."""
    _root_only()
    machines = nodes.load(state_dir)
    cfg = ClusterConfig.load(state_dir)
    registered = registered_machines(cfg.etcd_endpoint, cfg.key_prefix) if cfg.fleetd else set()
    host, _, port = cfg.etcd_endpoint.removeprefix("http://").rpartition(":")
    healthy = EtcdProcess(host=host, client_port=int(port)).healthy()
    click.echo(f"etcd {cfg.etcd_endpoint} {'healthy' if healthy else 'DOWN'}")
    rows = [("MACHINE", "IP", "MACHINE-ID", "STATE", "FLEETD", "REGISTERED")]
    for n in machines:
        rows.append(
            (
                n.name,
                n.ip,
                n.machine_id,
                "running" if n.running else "off",
                _fleetd_state(n) if cfg.fleetd else "-",
                ("yes" if n.machine_id in registered else "no") if cfg.fleetd else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@cli.command()
@click.pass_obj
def env(state_dir: Path) -> None:
    """Print the lines to `eval` again."""
    for line in env_lines(state_dir):
        click.echo(line)


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("machine")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(state_dir: Path, machine: str, argv: tuple[str, ...]) -> None:
    """Run a command in a machine (`exec fleet1 -- systemctl status`); its exit code is ours."""
    _root_only()
    node = nodes.find(state_dir, machine)
    proc = nodes.exec(node, list(argv), timeout=None, capture=False)
    sys.exit(proc.returncode)


@cli.command(name="kill")
@click.argument("machine")
@click.pass_obj
def kill_(state_dir: Path, machine: str) -> None:
    """Power loss: SIGKILL everything in the machine (start it with `restart`)."""
    _root_only()
    node = nodes.kill(nodes.find(state_dir, machine))
    _say(f"{node.name} killed")


@cli.command()
@click.argument("machine")
@click.pass_obj
def restart(state_dir: Path, machine: str) -> None:
    """Reboot a machine (or boot a killed one); same disk, same machine id."""
    _root_only()
    node = nodes.find(state_dir, machine)
    started = time.monotonic()
    node = nodes.restart(node) if node.running else nodes.start(node)
    _say(f"{node.name} up again in {time.monotonic() - started:.1f}s")


@cli.command()
@click.argument("machine")
@click.pass_obj
def replace(state_dir: Path, machine: str) -> None:
    """A new machine in its place: new machine id and host key, same name and IP."""
    _root_only()
    cfg = ClusterConfig.load(state_dir)
    old = nodes.find(state_dir, machine)
    node = nodes.replace(old, setup=cfg.setup())
    _say(f"{node.name}: machine id {old.machine_id} -> {node.machine_id}")
    if cfg.fleetd:
        wait_registered(cfg.etcd_endpoint, [node.machine_id], cfg.key_prefix, 90)


@cli.command()
@click.option("--metadata", default="", help="k=v,k2=v2 for the new machine.")
@click.pass_obj
def add(state_dir: Path, metadata: str) -> None:
    """Boot one more machine into the cluster."""
    _root_only()
    cfg = ClusterConfig.load(state_dir)
    lay = nodes.layout(state_dir)
    name = lay.node_name(max((n.index for n in nodes.load(state_dir)), default=0) + 1)
    cfg.metadata[name] = parse_metadata(metadata) if metadata else cfg.default_metadata
    cfg.save(state_dir)
    node = nodes.add(state_dir, setup=cfg.setup())
    if cfg.fleetd:
        wait_registered(cfg.etcd_endpoint, [node.machine_id], cfg.key_prefix, 90)
    click.echo(f"{node.name} {node.ip} {node.machine_id}")


@cli.command()
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
