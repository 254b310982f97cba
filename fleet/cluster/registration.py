"""fleetd's presence in etcd, as the host sees it: which machines registered.

fleetd keeps a ``<prefix>machine/<machine-id>`` key alive under a lease while
it runs; a booted machine counts as part of the cluster once that key exists.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Sequence

from fleet.errors import Timeout
from fleet.registry.keys import DEFAULT_PREFIX as DEFAULT_KEY_PREFIX


def registered_machines(endpoint: str, key_prefix: str = DEFAULT_KEY_PREFIX) -> set[str]:
    """Machine ids with a ``<prefix>machine/<id>`` key (fleetd's presence, leased)."""
    return set(presence_leases(endpoint, key_prefix))


def presence_leases(endpoint: str, key_prefix: str = DEFAULT_KEY_PREFIX) -> dict[str, int]:
    """Machine id -> the lease its presence key hangs on ({} if etcd does not answer).

    A rebooted machine's new fleetd holds a new lease: until then the old
    process's presence may still be listed, for up to the agent TTL."""
    prefix = key_prefix.rstrip("/") + "/machine/"
    proc = subprocess.run(
        [
            "etcdctl",
            f"--endpoints={endpoint}",
            "get",
            "--prefix",
            "--keys-only",
            "-w",
            "json",
            prefix,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=10,
        check=False,
    )
    if proc.returncode != 0:
        return {}
    leases = {}
    for kv in json.loads(proc.stdout).get("kvs", []):
        key = base64.b64decode(kv["key"]).decode()
        if key.startswith(prefix) and "/" not in key[len(prefix) :]:
            leases[key[len(prefix) :]] = int(kv.get("lease", 0))
    return leases


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


def wait_reregistered(
    endpoint: str, machine_id: str, old_lease: int | None, key_prefix: str, timeout: float
) -> None:
    """Until ``machine_id`` is registered on a lease other than ``old_lease`` (its
    fleetd before a reboot): the presence of the fleetd that runs now."""
    deadline = time.monotonic() + timeout
    while True:
        lease = presence_leases(endpoint, key_prefix).get(machine_id)
        if lease is not None and lease != old_lease:
            return
        if time.monotonic() > deadline:
            raise Timeout(f"fleetd of {machine_id} did not register again within {timeout:.0f}s")
        time.sleep(0.2)
