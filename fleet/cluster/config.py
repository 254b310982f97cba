"""The cluster's configuration on disk: what ``fleet-cluster up`` decided, in ``cluster.json``.

Where etcd runs, how fleetd was provisioned, which metadata each machine got:
``replace`` or ``add`` read it back to provision a new machine the way ``up``
provisioned the first ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleet.cluster import nodes
from fleet.cluster.provision import provision_machine
from fleet.errors import FleetError

CLUSTER_FILE = "cluster.json"


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
    # With --etcd-members 3|5: one MemberSpec (fleet.cluster.etcd_members) each;
    # etcd_endpoint is then every member's URL, comma-joined.
    etcd_members: list[dict[str, Any]] = field(default_factory=list)

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
