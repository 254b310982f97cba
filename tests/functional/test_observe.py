"""Health at a glance on real systemd machines (issue 11), on the shared cluster:
list-machines' leader/status/version/units fields, cluster-status, /health and
/ready on every machine's TCP API, and ``status -o json`` over SSH."""

from __future__ import annotations

import json
import urllib.request

import pytest

from fleet import __version__
from tests.functional.cluster import Cluster
from tests.functional.isolated import API_PORT
from tests.functional.unitviews import unit_path, wait_active

pytestmark = pytest.mark.functional


def test_machines_leader_health_and_status_json(fleet: Cluster) -> None:
    cluster = fleet
    listed = cluster.fleetctl(
        "list-machines", "--no-legend", "--full", "--fields=machine,status,leader,version"
    )
    rows = [line.split("\t") for line in listed.stdout.replace("\t\t", "\t").splitlines()]
    ids = {m.machine_id for m in cluster.machines}
    assert {row[0] for row in rows} == ids
    assert all(row[1] == "ok" for row in rows), rows
    leaders = [row[0] for row in rows if "*" in row]
    assert len(leaders) == 1, rows

    status = json.loads(cluster.fleetctl("cluster-status", "-o", "json").stdout)
    assert status["leader"]["machine_id"] == leaders[0]
    assert status["machines"] == {"total": 3, "ok": 3, "cordoned": 0, "lost": 0}
    assert all(member["healthy"] for member in status["etcd_members"])
    machines = json.loads(cluster.fleetctl("list-machines", "-o", "json").stdout)
    assert {m["version"] for m in machines} == {__version__}

    for machine in cluster.machines:
        for path in ("/health", "/ready"):
            with urllib.request.urlopen(f"http://{machine.ip}:{API_PORT}{path}", timeout=10) as r:
                assert r.status == 200, (machine.ip, path)
                body = json.loads(r.read())
            assert body["machineID"] == machine.machine_id

    cluster.fleetctl("start", unit_path("hello.service"))
    wait_active(cluster, 1)
    ssh = (f"--ssh-identity-file={cluster.ssh_key}", "--strict-host-key-checking=false")
    (item,) = json.loads(cluster.fleetctl(*ssh, "status", "-o", "json", "hello.service").stdout)
    assert item["unit"] == "hello.service"
    assert item["properties"]["Id"] == "hello.service"
    assert item["properties"]["ActiveState"] == "active"
    assert item["properties"]["SubState"] == "running"
    counted = json.loads(cluster.fleetctl("list-machines", "-o", "json").stdout)
    assert sorted(m["units"] for m in counted) == [0, 0, 1]
