"""fleetd's presence in etcd, as the host sees it: which machines registered.

fleetd keeps a ``<prefix>machine/<machine-id>`` key alive under a lease while
it runs; a booted machine counts as part of the cluster once that key exists.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence

from fleet.errors import Timeout
from fleet.registry.keys import DEFAULT_PREFIX as DEFAULT_KEY_PREFIX


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
