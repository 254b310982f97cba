"""A stand-in fleetd for the cluster tests: they check the wiring (units, sockets,
fleet.conf, registration, power operations), not fleetd itself."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Registers <prefix>machine/<machine-id> under a 3 s lease, as fleetd does, and
# records how many sockets systemd passed it. It lives on the host's root file
# system (not /tmp), so every machine sees it at the same path through its overlay.
_FAKE_FLEETD = r"""#!/bin/bash
set -eu
conf=/etc/fleet/fleet.conf
get() { sed -n "s/^$1=//p" "$conf"; }
endpoint=$(get etcd_servers | cut -d, -f1)
prefix=$(get etcd_key_prefix)
id=$(cat /etc/machine-id)
export ETCDCTL_API=3
lease=$(etcdctl --endpoints="$endpoint" lease grant 3 | awk '{print $2}')
etcdctl --endpoints="$endpoint" put --lease="$lease" "${prefix}machine/$id" \
    "{\"ID\":\"$id\",\"PublicIP\":\"$(get public_ip)\",\"ListenFDs\":\"${LISTEN_FDS:-0}\"}"
exec etcdctl --endpoints="$endpoint" lease keep-alive "$lease"
"""


@pytest.fixture(scope="session")
def fake_fleetd() -> Iterator[Path]:
    # Not under /tmp: every machine mounts its own tmpfs there.
    directory = Path(tempfile.mkdtemp(prefix="fleet-cluster-tests-", dir="/var/tmp"))
    path = directory / "fleetd"
    path.write_text(_FAKE_FLEETD)
    path.chmod(0o755)
    yield path
    shutil.rmtree(directory)
