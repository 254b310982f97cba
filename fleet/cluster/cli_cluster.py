"""The commands over a whole cluster: ``up``, ``down``, ``status``, ``env``.

``up`` starts etcd on the host bridge, boots the machines with fleetd
provisioned, waits until every fleetd registered, then prints the lines to
``eval``; ``down`` removes every trace. Progress goes to stderr; stdout
carries only what a caller consumes (the ``eval`` lines, the status table).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from fleet.cluster import nodes
from fleet.cluster.config import ClusterConfig
from fleet.cluster.etcd import EtcdProcess
from fleet.cluster.etcd_members import MEMBER_COUNTS, EtcdCluster, MemberSpec, plan_members
from fleet.cluster.provision import default_fleetd, fleet_conf, parse_metadata, scripts_dir
from fleet.cluster.registration import registered_machines, wait_registered
from fleet.entry import require_daemon_extra
from fleet.errors import FleetError, InvalidConfig, NotFound, Timeout
from fleet.registry.keys import DEFAULT_PREFIX as DEFAULT_KEY_PREFIX

DEFAULT_API_PORT = 54728


def env_lines(state_dir: Path) -> list[str]:
    """Shell lines that point fleetctl (this installation's, first on PATH) at the
    cluster, with the cluster's SSH key and its machines' host keys, so
    ``fleetctl ssh/status/journal/--tunnel`` work without a prompt."""
    cfg = ClusterConfig.load(state_dir)
    state_dir = state_dir.absolute()
    key = state_dir / nodes.CLUSTER_KEY
    bin_dir = scripts_dir()
    return [
        f'export PATH="{bin_dir}:$PATH"',
        "export FLEETCTL_DRIVER=etcd",
        f"export FLEETCTL_ENDPOINT={cfg.etcd_endpoint}",
        f"export FLEETCTL_ETCD_KEY_PREFIX={cfg.key_prefix}",
        "export FLEETCTL_SSH_USERNAME=root",
        f"export FLEETCTL_SSH_IDENTITY_FILE={key}",
        f"export FLEETCTL_KNOWN_HOSTS_FILE={nodes.known_hosts_path(state_dir)}",
        f"export FLEET_CLUSTER_STATE_DIR={state_dir}",
        f"# ssh to a machine: ssh -i {key} -o UserKnownHostsFile="
        f"{nodes.known_hosts_path(state_dir)} root@<ip>",
    ]


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


@click.command()
@click.option(
    "--machines", "-n", "count", type=click.IntRange(1, 200), default=3, show_default=True
)
@click.option("--metadata", multiple=True, help="k=v,k2=v2: once for all, or once per machine.")
@click.option("--agent-ttl", default="5s", show_default=True)
@click.option("--no-fleetd", is_flag=True, help="Only machines and etcd.")
@click.option("--fleetd", "fleetd_path", type=click.Path(path_type=Path), help="fleetd executable.")
@click.option(
    "--etcd-port",
    type=int,
    default=2379,
    show_default=True,
    help="0: any free port. With several members: member i uses port+2i (clients), +1 (peers).",
)
@click.option(
    "--etcd-members",
    type=click.Choice([str(n) for n in MEMBER_COUNTS]),
    default="1",
    show_default=True,
    help="etcd members on the host, each its own data dir and ports.",
)
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
    etcd_members: str,
    api_port: int,
    key_prefix: str,
    extra: tuple[str, ...],
    prefix: str,
    subnet: str,
    bridge: str,
    timeout: float,
) -> None:
    """Start etcd and boot the machines, then print the lines to `eval`."""
    nodes.check_host()
    started = time.monotonic()
    try:
        if any(n.running for n in nodes.load(state_dir)):
            raise FleetError(f"a cluster is already up in {state_dir}: `fleet-cluster down` first")
    except NotFound:
        pass
    fleetd = (fleetd_path or default_fleetd()).absolute()
    if not no_fleetd and fleetd_path is None:
        require_daemon_extra("fleet-cluster up (the machines run this installation's fleetd)")
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
    nodes.check_free(lay)
    _down(state_dir, prefix, bridge)
    state_dir.mkdir(parents=True, exist_ok=True)
    nodes.ensure_bridge(lay)
    etcd: EtcdProcess | EtcdCluster
    specs: list[MemberSpec] = []
    if int(etcd_members) == 1:
        etcd = EtcdProcess(
            host=lay.host_ip,
            client_port=etcd_port,
            data_dir=state_dir / "etcd",
            fast=False,
            log_path=state_dir / "etcd.log",
        )
    else:
        specs = plan_members(
            int(etcd_members),
            lay.host_ip,
            state_dir,
            base_port=etcd_port,
            log_dir=state_dir,
            pid_dir=state_dir,
        )
        etcd = EtcdCluster(specs)
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
        etcd_members=[spec.to_json() for spec in specs],
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
        click.echo(f"etcd on {etcd.endpoint}; booting {count} machine(s)...", err=True)
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
        if isinstance(etcd, EtcdCluster):
            etcd.detach()
        else:
            etcd.detach(Path(cfg.etcd_pid_file))
    click.echo(f"{count} machine(s) up in {time.monotonic() - started:.1f}s", err=True)
    if cfg.fleetd:
        try:
            wait_registered(cfg.etcd_endpoint, [n.machine_id for n in booted], key_prefix, timeout)
        except Timeout as exc:
            raise FleetError(
                f"{exc} (the cluster stays up: `fleet-cluster exec {booted[0].name} -- "
                "journalctl -u fleet` to see why, `fleet-cluster down` to remove it)"
            ) from exc
        click.echo(
            f"fleetd registered on every machine after {time.monotonic() - started:.1f}s", err=True
        )
    for line in env_lines(state_dir):
        click.echo(line)


def _down(state_dir: Path, prefix: str = "fleet", bridge: str = "fleetbr0") -> None:
    try:
        cfg = ClusterConfig.load(state_dir)
        EtcdProcess.stop_detached(Path(cfg.etcd_pid_file))
        for member in cfg.etcd_members:
            if member.get("pid_file"):
                EtcdProcess.stop_detached(Path(member["pid_file"]))
    except FleetError:
        EtcdProcess.stop_detached(state_dir / "etcd.pid")
    for pid_file in state_dir.glob("etcd-m*.pid") if state_dir.is_dir() else ():
        EtcdProcess.stop_detached(pid_file)
    nodes.teardown(state_dir, prefix, bridge)


@click.command()
@click.option("--prefix", default="fleet", show_default=True, help="Used if the state is lost.")
@click.option("--bridge", default="fleetbr0", show_default=True, help="Used if the state is lost.")
@click.pass_obj
def down(state_dir: Path, prefix: str, bridge: str) -> None:
    """Stop machines and etcd; remove bridge, mounts, state: nothing is left behind."""
    nodes.check_host()
    started = time.monotonic()
    _down(state_dir, prefix, bridge)
    click.echo(f"cluster in {state_dir} removed in {time.monotonic() - started:.1f}s", err=True)


@click.command()
@click.pass_obj
def status(state_dir: Path) -> None:
    """Machines, their IP, machine id and fleetd state."""
    nodes.check_host()
    machines = nodes.load(state_dir)
    cfg = ClusterConfig.load(state_dir)
    registered = registered_machines(cfg.etcd_endpoint, cfg.key_prefix) if cfg.fleetd else set()
    if cfg.etcd_members:
        members = EtcdCluster([MemberSpec.from_json(m) for m in cfg.etcd_members])
        for name in members.names:
            seen = members.status(name)
            role = "DOWN" if seen is None else ("leader" if seen[0] == seen[1] else "follower")
            click.echo(f"etcd {name} {members.spec(name).endpoint} {role}")
    else:
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


@click.command()
@click.pass_obj
def env(state_dir: Path) -> None:
    """Print the lines to `eval` again."""
    for line in env_lines(state_dir):
        click.echo(line)


def _members(state_dir: Path) -> EtcdCluster:
    cfg = ClusterConfig.load(state_dir)
    if not cfg.etcd_members:
        raise InvalidConfig(
            f"the cluster in {state_dir} runs a single etcd: `fleet-cluster up --etcd-members 3`"
        )
    return EtcdCluster([MemberSpec.from_json(m) for m in cfg.etcd_members])


@click.group()
def etcd() -> None:
    """Faults on one etcd member of a `up --etcd-members 3|5` cluster (by PID)."""


_FAULTS: dict[str, tuple[str, Callable[[EtcdCluster, str], None]]] = {
    "kill": ("SIGKILL the member (a crash).", EtcdCluster.kill),
    "pause": ("SIGSTOP the member: sockets stay open, nothing answers.", EtcdCluster.pause),
    "resume": ("SIGCONT a paused member.", EtcdCluster.resume),
    "move-leader": ("Make the member the raft leader.", EtcdCluster.move_leader),
}


def _fault_command(verb: str, doc: str, act: Callable[[EtcdCluster, str], None]) -> None:
    @etcd.command(name=verb, help=doc)
    @click.argument("member")
    @click.pass_obj
    def command(state_dir: Path, member: str) -> None:
        act(_members(state_dir), member)
        click.echo(f"etcd member {member}: {verb} done", err=True)


for _verb, (_doc, _act) in _FAULTS.items():
    _fault_command(_verb, _doc, _act)


@etcd.command(name="restart")
@click.argument("member")
@click.option("--no-wait", is_flag=True, help="Do not wait until it is healthy.")
@click.pass_obj
def etcd_restart(state_dir: Path, member: str, no_wait: bool) -> None:
    """Start the member again on its data dir and ports (stopping it first if it runs)."""
    members = _members(state_dir)
    members.restart(member, wait=not no_wait)
    members.detach()
    click.echo(f"etcd member {member}: restarted", err=True)


@etcd.command(name="leader")
@click.pass_obj
def etcd_leader(state_dir: Path) -> None:
    """Print the name of the member that leads."""
    click.echo(_members(state_dir).leader())
