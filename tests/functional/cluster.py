"""Test-side handle on a local fleet cluster (etcd + real systemd machines + fleetd).

The functional tests drive fleet the way fleet's own harness did: fleetctl on
the host against the cluster's etcd, commands on the machines through
``nsenter`` (or ssh), machines killed, rebooted and replaced under fleet's
feet. This module owns that vocabulary on top of :mod:`fleet.cluster.nodes`
and :mod:`fleet.cluster.config` (the same code ``fleet-cluster up`` runs), so a
test reads like the scenario it checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from fleet.cluster import nodes
from fleet.cluster.config import ClusterConfig
from fleet.cluster.etcd import EtcdProcess
from fleet.cluster.etcd_members import EtcdCluster, plan_members
from fleet.cluster.provision import default_fleetd
from fleet.cluster.registration import presence_leases, registered_machines, wait_reregistered
from fleet.errors import Timeout
from fleet.registry.keys import DEFAULT_PREFIX as DEFAULT_KEY_PREFIX

T = TypeVar("T")
MachineRef = nodes.Node | str | int  # a Node, its name, IP or machine id, or its 1-based index
VENV_BIN = Path(sys.executable).parent


def wait_for(
    predicate: Callable[[], T | bool | None],
    timeout: float = 15.0,
    *,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Poll until ``predicate()`` is truthy (fleet's WaitForState: 250 ms up to 15 s).

    Returns the truthy value so a test can assert on what it waited for.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = predicate()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise Timeout(f"{what} not reached within {timeout:.1f}s (last value {last!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class ClusterLayout:
    """Names that must differ between clusters that exist at the same time."""

    state_dir: Path
    prefix: str
    subnet: str
    bridge: str


@dataclass
class Cluster:
    """A running cluster; :meth:`start` boots one, :meth:`stop` removes every trace."""

    layout: ClusterLayout
    etcd: EtcdProcess | EtcdCluster  # EtcdCluster with etcd_members > 1
    config: ClusterConfig
    boot_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def start(
        cls,
        count: int,
        layout: ClusterLayout,
        *,
        fleetd: bool = True,
        fleetd_path: Path | None = None,
        agent_ttl: str = "3s",
        metadata: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
        extra_config: Mapping[str, str] | None = None,
        api_port: int | None = 54728,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout: float = 60,
        etcd_members: int = 1,
    ) -> Cluster:
        """Boot ``count`` machines with fleetd and wait until every fleetd registered."""
        started = time.monotonic()
        fleetd_path = fleetd_path or default_fleetd()
        if fleetd and not nodes.visible_in_machines(fleetd_path):
            raise ValueError(f"{fleetd_path}: not visible inside machines (/tmp is theirs)")
        lay = nodes.Layout(layout.state_dir, layout.prefix, layout.subnet, layout.bridge)
        lay.check()
        nodes.teardown(layout.state_dir, layout.prefix, layout.bridge)
        lay.state_dir.mkdir(parents=True)
        nodes.ensure_bridge(lay)
        # etcd's data stays off the state dir: a failed boot removes that dir.
        etcd: EtcdProcess | EtcdCluster
        if etcd_members == 1:
            etcd = EtcdProcess(host=lay.host_ip, fast=True).start()
        else:
            # Members' data on tmpfs, off the state dir; raft timings between the
            # single test etcd's (10/100 ms) and etcd's defaults (100/1000 ms).
            data = Path(tempfile.mkdtemp(prefix=f"{layout.prefix}-etcd-", dir="/dev/shm"))
            etcd = EtcdCluster(
                plan_members(etcd_members, lay.host_ip, data, log_dir=data, raft_ms=(50, 500)),
                own_dir=data,
            ).start()
        if isinstance(metadata, Mapping) or metadata is None:
            per_machine: dict[str, dict[str, str]] = {}
            default = dict(metadata or {})
        else:
            per_machine = {lay.node_name(i + 1): dict(md) for i, md in enumerate(metadata)}
            default = {}
        config = ClusterConfig(
            etcd_endpoint=etcd.endpoint,
            etcd_pid_file="",
            fleetd=fleetd,
            fleetd_path=str(fleetd_path),
            agent_ttl=agent_ttl,
            key_prefix=key_prefix,
            api_port=api_port,
            restart_sec="1s",
            extra_config=dict(extra_config or {}),
            metadata=per_machine,
            default_metadata=default,
        )
        cluster = cls(layout, etcd, config)
        try:
            booted = nodes.boot(
                count,
                state_dir=layout.state_dir,
                prefix=layout.prefix,
                subnet=layout.subnet,
                bridge=layout.bridge,
                timeout=timeout,
                setup=config.setup(),
            )
            cluster.timings["boot"] = time.monotonic() - started
            if fleetd:
                cluster.wait_registered(len(booted), timeout=timeout)
        except BaseException:
            if not os.environ.get("FLEET_CLUSTER_KEEP"):
                cluster.stop()
            raise
        cluster.boot_seconds = time.monotonic() - started
        cluster.timings["ready"] = cluster.boot_seconds
        return cluster

    def stop(self) -> None:
        started = time.monotonic()
        try:
            nodes.teardown(self.layout.state_dir, self.layout.prefix, self.layout.bridge)
        finally:
            self.etcd.stop()
        self.timings["teardown"] = time.monotonic() - started

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ machines

    @property
    def endpoint(self) -> str:
        return self.etcd.endpoint

    @property
    def machines(self) -> list[nodes.Node]:
        return nodes.load(self.layout.state_dir)

    @property
    def ssh_key(self) -> Path:
        return self.layout.state_dir / nodes.CLUSTER_KEY

    def machine(self, ref: MachineRef) -> nodes.Node:
        if isinstance(ref, nodes.Node):
            ref = ref.name
        if isinstance(ref, int):
            ref = nodes.Layout(prefix=self.layout.prefix).node_name(ref)
        return nodes.find(self.layout.state_dir, ref)

    def known_hosts(self) -> str:
        """known_hosts lines for every machine (tests choose whether fleetctl gets them)."""
        return "".join(f"{m.ip} {m.host_key}\n" for m in self.machines)

    def exec(
        self,
        machine: MachineRef,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        proc = nodes.exec(self.machine(machine), argv, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{argv} on {self.machine(machine).name} exited {proc.returncode}: "
                f"{proc.stderr.strip()}"
            )
        return proc

    def systemctl(
        self, machine: MachineRef, *args: str, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.exec(machine, ["systemctl", "--no-pager", *args], check=check)

    def kill(self, machine: MachineRef) -> nodes.Node:
        """Power loss: the machine's fleetd vanishes without deregistering."""
        return nodes.kill(self.machine(machine))

    def restart(self, machine: MachineRef, *, wait_fleetd: bool = True) -> nodes.Node:
        """Reboot (or boot a killed machine): same machine id, fleetd registers again."""
        node = self.machine(machine)
        before = presence_leases(self.endpoint, self.config.key_prefix).get(node.machine_id)
        node = nodes.restart(node) if node.running else nodes.start(node)
        if self.config.fleetd and wait_fleetd:
            # Not the old fleetd's presence, which may outlive the reboot by up to a TTL.
            wait_reregistered(
                self.endpoint, node.machine_id, before, self.config.key_prefix, timeout=30
            )
        return node

    def replace(self, machine: MachineRef, *, wait_fleetd: bool = True) -> nodes.Node:
        """fleet's ReplaceMember: poweroff, wait for N-1 machines, recreate with a new id."""
        old = nodes.stop(self.machine(machine))
        if self.config.fleetd:
            self.wait_for(
                lambda: old.machine_id not in self.registered(),
                timeout=30,
                what=f"{old.name} ({old.machine_id}) leaving the cluster",
            )
        node = nodes.replace(old, setup=self.config.setup())
        if self.config.fleetd and wait_fleetd:
            self.wait_registered(ids=[node.machine_id])
        return node

    def add_machine(
        self, metadata: Mapping[str, str] | None = None, *, wait_fleetd: bool = True
    ) -> nodes.Node:
        lay = nodes.Layout(prefix=self.layout.prefix)
        name = lay.node_name(max((m.index for m in self.machines), default=0) + 1)
        self.config.metadata[name] = dict(metadata or self.config.default_metadata)
        node = nodes.add(self.layout.state_dir, setup=self.config.setup())
        if self.config.fleetd and wait_fleetd:
            self.wait_registered(ids=[node.machine_id])
        return node

    # ------------------------------------------------------------ fleet

    def registered(self) -> set[str]:
        """Machine ids whose fleetd currently has a presence key in etcd."""
        return registered_machines(self.endpoint, self.config.key_prefix)

    def wait_registered(
        self, count: int | None = None, *, ids: Sequence[str] = (), timeout: float = 30
    ) -> set[str]:
        def done() -> set[str] | None:
            seen = self.registered()
            ok = set(ids) <= seen and (count is None or len(seen) == count)
            return seen if ok else None

        return self.wait_for(done, timeout, what=f"{count or list(ids)} fleetd registration(s)")

    def fleetctl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The venv's fleetctl against this cluster's etcd (``--driver=etcd``)."""
        argv = [str(VENV_BIN / "fleetctl"), "--driver=etcd", f"--endpoint={self.endpoint}"]
        if self.config.key_prefix != DEFAULT_KEY_PREFIX:
            argv.append(f"--etcd-key-prefix={self.config.key_prefix}")
        full_env = {**os.environ, "FLEETCTL_SSH_USERNAME": "root", "NO_COLOR": "1"}
        full_env.pop("FLEETCTL_ENDPOINT", None)
        full_env.pop("FLEETCTL_DRIVER", None)
        full_env.update(env or {})
        proc = subprocess.run(
            [*argv, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"fleetctl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    @staticmethod
    def wait_for(
        predicate: Callable[[], T | bool | None],
        timeout: float = 15.0,
        *,
        interval: float = 0.25,
        what: str = "condition",
    ) -> T:
        return wait_for(predicate, timeout, interval=interval, what=what)


def layout_for(slot: int, *, base: str = "fx") -> ClusterLayout:
    """A layout that no other slot (and no other suite's defaults) collides with."""
    name = f"{base}{slot}" if slot else base
    return ClusterLayout(
        state_dir=Path(f"/tmp/{name}"),
        prefix=f"{name}n",
        subnet=f"10.251.{100 + slot}",
        bridge=f"{name}br",
    )
