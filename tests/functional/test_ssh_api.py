"""fleet's SSH, tunnel and HTTP-API scenarios on real systemd machines (fleet-reference §5).

fleetctl runs on the host, as in fleet's harness: against one machine's TCP
API (``--endpoint=http://<ip>:54728``), or through ``--tunnel=<ip>`` with the
default unix endpoint (each HTTP connection is ``fleetctl fd-forward`` on the
bastion). Remote commands (``ssh``, ``status``, ``journal``) log in as root
with the cluster key and check host keys against a temporary known_hosts file,
answering fleet's prompt with "yes" on stdin. Where fleet's scenario allows it,
each is run both directly and through a tunnel. The machine-API scenarios
speak HTTP to a machine's ``fleet-tcp.socket`` with httpx.

Every test here runs on clusters from :func:`private_clusters` (base "ssh"),
so this file can run next to the other functional files.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet import __version__
from fleet.cluster import nodes
from tests.functional.cluster import Cluster
from tests.functional.isolated import API_PORT, FLEETCTL, private_clusters
from tests.functional.unitviews import (
    UnitRow,
    assert_systemd_runs,
    poll,
    unit_path,
)

pytestmark = pytest.mark.functional

MACHINES = "/fleet/v1/machines"
JSON = "application/json"
CHANGED_KEY = "REMOTE HOST IDENTIFICATION HAS CHANGED"


@pytest.fixture(scope="module")
def clusters() -> Iterator[Callable[..., Cluster]]:
    yield from private_clusters("ssh", 180)


@pytest.fixture(scope="module")
def trio(clusters: Callable[..., Cluster]) -> Cluster:
    """Three machines shared by the scenarios that leave machines alone (they clean up)."""
    return clusters(3)


@pytest.fixture
def fresh() -> Iterator[Callable[..., Cluster]]:
    yield from private_clusters("ssh", 180)


# ---------------------------------------------------------------- fleetctl over SSH


def fleetctl(
    cluster: Cluster,
    *args: str,
    tunnel: nodes.Node | None = None,
    known_hosts: Path | None = None,
    answer: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """fleetctl on the host as root with the cluster key.

    Without ``tunnel``: against the first machine's TCP API. With it: through
    SSH to ``tunnel`` and the default unix endpoint there. ``known_hosts``
    turns strict host-key checking on (``answer`` is typed at the prompts);
    without it checking is off.
    """
    argv = [FLEETCTL, "--ssh-username=root", f"--ssh-identity-file={cluster.ssh_key}"]
    if tunnel is not None:
        argv.append(f"--tunnel={tunnel.ip}")
    else:
        argv.append(f"--endpoint=http://{cluster.machines[0].ip}:{API_PORT}")
    if known_hosts is not None:
        argv += ["--strict-host-key-checking=true", f"--known-hosts-file={known_hosts}"]
    else:
        argv.append("--strict-host-key-checking=false")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETCTL_", "SSH_AUTH"))}
    return subprocess.run(
        [*argv, *args],
        input=answer,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, "NO_COLOR": "1", **(env or {})},
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"{proc.args[1:]} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return proc


def units_of(
    cluster: Cluster, tunnel: nodes.Node | None = None, known_hosts: Path | None = None
) -> list[UnitRow]:
    """fleet's harness parser of ``list-units``, read over the chosen transport."""
    out = ok(
        fleetctl(
            cluster,
            "list-units",
            "--no-legend",
            "--full",
            "--fields",
            "unit,active,machine",
            tunnel=tunnel,
            known_hosts=known_hosts,
        )
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return [UnitRow(u, a, m.split("/")[0]) for u, a, m in rows]


def active(rows: Sequence[UnitRow]) -> dict[str, list[str]]:
    placed: dict[str, list[str]] = {}
    for row in rows:
        if row.active == "active":
            placed.setdefault(row.unit, []).append(row.machine_id)
    return placed


def destroy(cluster: Cluster, *names: str) -> None:
    ok(fleetctl(cluster, "destroy", *names))
    poll(cluster, lambda: units_of(cluster), lambda rows: not rows, "no unit left", 30)


Via = Callable[[Cluster], nodes.Node | None]
VIAS = [
    pytest.param(lambda c: None, id="endpoint"),
    pytest.param(lambda c: c.machines[0], id="tunnel"),
]


# ---------------------------------------------------------------- known hosts


def test_known_hosts_verification(fresh: Callable[..., Cluster], tmp_path: Path) -> None:
    """TestKnownHostsVerification: ``ssh m1`` accepted once with "yes", refused with the
    changed-key banner after m1 is replaced (new host key, same IP), accepted again
    after the known_hosts file is emptied. Checked directly and through a tunnel via m0."""
    cluster = fresh(2)
    m0, m1 = cluster.machines
    direct, tunneled = tmp_path / "direct", tmp_path / "tunneled"

    def ssh(target: nodes.Node, kh: Path, answer: str) -> subprocess.CompletedProcess[str]:
        bastion = m0 if kh == tunneled else None
        return fleetctl(
            cluster,
            "ssh",
            target.machine_id,
            "uptime",
            tunnel=bastion,
            known_hosts=kh,
            answer=answer,
        )

    for kh, answers in ((direct, "yes\n"), (tunneled, "yes\nyes\n")):
        proc = ok(ssh(m1, kh, answers))
        assert " up " in proc.stdout
        assert proc.stderr.count("Permanently added") == answers.count("yes")
        assert f"{m1.ip} {m1.host_key.split()[0]} {m1.host_key.split()[1]}" in kh.read_text()
        # Known now: no prompt, and no answer needed.
        assert "authenticity" not in ok(ssh(m1, kh, "")).stderr

    # Like fleet's ReplaceMember: same IP, new machine id and host key.
    new = cluster.replace(m1)
    assert new.ip == m1.ip
    assert new.machine_id != m1.machine_id
    assert new.host_key != m1.host_key

    for kh in (direct, tunneled):
        before = kh.read_text()
        proc = ssh(new, kh, "yes\n")
        assert proc.returncode == 1, proc
        assert CHANGED_KEY in proc.stderr
        assert f"remote host {m1.ip} is" in proc.stderr
        assert " up " not in proc.stdout
        assert kh.read_text() == before, "a changed key must never be written"

    for kh, answers in ((direct, "yes\n"), (tunneled, "yes\nyes\n")):
        kh.write_text("")
        proc = ok(ssh(new, kh, answers))
        assert " up " in proc.stdout
        assert new.host_key.split()[1] in kh.read_text()


# ---------------------------------------------------------------- tunnel


def test_tunnel_schedule_batch_units(trio: Cluster, tmp_path: Path) -> None:
    """TestTunnelScheduleBatchUnits: through ``--tunnel=<m0>`` (API over the bastion's unix
    socket, strict host keys answered "yes") start hello, then hello@1..10 in one
    command; no error on stderr and 11 units active."""
    m0 = trio.machines[0]
    kh = tmp_path / "known_hosts"
    instances = [f"hello@{i}.service" for i in range(1, 11)]
    try:
        first = ok(
            fleetctl(
                trio, "start", unit_path("hello.service"), tunnel=m0, known_hosts=kh, answer="yes\n"
            )
        )
        assert "Error" not in first.stderr
        assert "Permanently added" in first.stderr
        assert "Unit hello.service launched on" in first.stdout
        batch = ok(
            fleetctl(
                trio,
                "start",
                *(str(Path(unit_path("hello@.service")).parent / u) for u in instances),
                tunnel=m0,
                known_hosts=kh,
            )
        )
        assert "Error" not in batch.stderr
        assert "authenticity" not in batch.stderr
        placed = poll(
            trio,
            lambda: active(units_of(trio, tunnel=m0, known_hosts=kh)),
            lambda p: sum(map(len, p.values())) == 11,
            "11 active units (read through the tunnel)",
        )
        assert sorted(placed) == sorted(["hello.service", *instances])
        assert_systemd_runs(trio, placed)
    finally:
        destroy(trio, "hello.service", *instances)


# ---------------------------------------------------------------- ssh / status / journal


@pytest.mark.parametrize("via", VIAS)
def test_unit_ssh_actions(trio: Cluster, via: Via) -> None:
    """TestUnitSSHActions: with hello started ``--no-block``, ``ssh hello.service echo foo``
    prints foo, ``status`` shows ``Active: active`` and ``journal --sudo`` shows
    ``Hello, World!`` (the machines have no sudo: that fails clearly, plain
    ``journal`` works)."""
    bastion = via(trio)
    try:
        started = ok(fleetctl(trio, "start", "--no-block", unit_path("hello.service")))
        assert "Triggered unit hello.service start" in started.stdout
        placed = poll(
            trio,
            lambda: active(units_of(trio)),
            lambda p: "hello.service" in p,
            "hello.service active",
        )
        (host,) = placed["hello.service"]

        echo = ok(fleetctl(trio, "ssh", "hello.service", "echo", "foo", tunnel=bastion))
        assert echo.stdout.strip() == "foo"
        hostname = ok(fleetctl(trio, "ssh", "hello.service", "cat /etc/machine-id", tunnel=bastion))
        assert hostname.stdout.strip() == host

        status = ok(fleetctl(trio, "status", "hello.service", tunnel=bastion))
        assert re.search(r"Active: active \(running\)", status.stdout), status.stdout
        assert "Loaded: loaded" in status.stdout

        def journal(*flags: str) -> subprocess.CompletedProcess[str]:
            return fleetctl(trio, "journal", *flags, "hello.service", tunnel=bastion)

        has_sudo = trio.exec(host, ["sh", "-c", "command -v sudo"]).returncode == 0
        with_sudo = journal("--sudo")
        if has_sudo:
            assert "Hello, World!" in ok(with_sudo).stdout
        else:
            assert with_sudo.returncode == 127, with_sudo
            assert "sudo: command not found" in with_sudo.stderr
        plain = poll(
            trio,
            lambda: ok(journal()).stdout,
            lambda out: "Hello, World!" in out,
            "Hello, World! in hello's journal",
        )
        assert len(plain.splitlines()) <= 10  # --lines defaults to 10
    finally:
        destroy(trio, "hello.service")


@pytest.mark.parametrize("via", VIAS)
def test_unit_status(trio: Cluster, via: Via) -> None:
    """TestUnitStatus: after ``load hello.service``, ``status`` shows ``Loaded: loaded``
    (and, the unit being only loaded, inactive in systemd)."""
    bastion = via(trio)
    try:
        loaded = ok(fleetctl(trio, "load", unit_path("hello.service"), tunnel=bastion))
        assert "Unit hello.service loaded on" in loaded.stdout
        status = fleetctl(trio, "status", "hello.service", tunnel=bastion)
        # systemctl status exits 3 for an inactive unit; fleetctl passes it on.
        assert status.returncode == 3, status
        assert "Loaded: loaded" in status.stdout
        assert "Active: inactive (dead)" in status.stdout
    finally:
        destroy(trio, "hello.service")


# ---------------------------------------------------------------- machines API


def api(cluster: Cluster) -> httpx.Client:
    return httpx.Client(base_url=f"http://{cluster.machines[0].ip}:{API_PORT}", timeout=10)


def machines_by_id(client: httpx.Client) -> dict[str, dict[str, Any]]:
    resp = client.get(MACHINES)
    assert resp.status_code == 200, resp.text
    return {m["id"]: m for m in resp.json()["machines"]}


def patch(client: httpx.Client, ops: list[dict[str, Any]]) -> httpx.Response:
    return client.patch(MACHINES, json=ops)


def test_machines_list(trio: Cluster) -> None:
    """TestMachinesList: ``GET /fleet/v1/machines`` answers 200 with JSON listing every
    machine with its IP and fleet's ``hostname`` metadata."""
    with api(trio) as client:
        resp = client.get(MACHINES)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(JSON)
    got = {m["id"]: (m["primaryIP"], m["metadata"]) for m in resp.json()["machines"]}
    assert got == {m.machine_id: (m.ip, {"hostname": m.name}) for m in trio.machines}


def test_machines_list_bad_next_page_token(trio: Cluster) -> None:
    """TestMachinesListBadNextPageToken: a token we never issued is a 400 with JSON."""
    with api(trio) as client:
        resp = client.get(MACHINES, params={"nextPageToken": "EwBMLg=="})
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith(JSON)
    assert resp.json()["error"]["code"] == 400


def test_machines_patch_add_modify(trio: Cluster) -> None:
    """TestMachinesPatchAddModify: ``add`` on m0 and ``replace`` on m1 answer 204 and show
    up next to ``hostname``; primaryIP is untouched."""
    m0, m1 = trio.machines[:2]
    with api(trio) as client:
        try:
            resp = patch(
                client,
                [
                    {"op": "add", "path": f"/{m0.machine_id}/metadata/foo", "value": "bar"},
                    {"op": "replace", "path": f"/{m1.machine_id}/metadata/ping", "value": "splat"},
                ],
            )
            assert resp.status_code == 204, resp.text
            machines = poll(
                trio,
                lambda: machines_by_id(client),
                lambda ms: "foo" in ms[m0.machine_id]["metadata"],
                "patched metadata visible",
            )
            assert machines[m0.machine_id]["metadata"] == {"foo": "bar", "hostname": m0.name}
            assert machines[m1.machine_id]["metadata"] == {"ping": "splat", "hostname": m1.name}
            assert machines[m0.machine_id]["primaryIP"] == m0.ip
            assert machines[m1.machine_id]["primaryIP"] == m1.ip
            listed = ok(fleetctl(trio, "list-machines", "--no-legend", "--full")).stdout
            assert f"{m0.machine_id}\t{m0.ip}\tfoo=bar,hostname={m0.name}" in listed
        finally:
            patch(
                client,
                [
                    {"op": "remove", "path": f"/{m0.machine_id}/metadata/foo"},
                    {"op": "remove", "path": f"/{m1.machine_id}/metadata/ping"},
                ],
            )


def test_machines_patch_delete(trio: Cluster) -> None:
    """TestMachinesPatchDelete: ``remove`` (value "") of added keys answers 204 and the
    machines are left with only ``hostname``."""
    m0, m1 = trio.machines[:2]
    with api(trio) as client:
        added = patch(
            client,
            [
                {"op": "add", "path": f"/{m0.machine_id}/metadata/foo", "value": "bar"},
                {"op": "add", "path": f"/{m1.machine_id}/metadata/ping", "value": "splat"},
            ],
        )
        assert added.status_code == 204, added.text
        resp = patch(
            client,
            [
                {"op": "remove", "path": f"/{m0.machine_id}/metadata/foo", "value": ""},
                {"op": "remove", "path": f"/{m1.machine_id}/metadata/ping", "value": ""},
            ],
        )
        assert resp.status_code == 204, resp.text
        machines = poll(
            trio,
            lambda: machines_by_id(client),
            lambda ms: all(len(m["metadata"]) == 1 for m in ms.values()),
            "only hostname metadata left",
        )
    assert {i: m["metadata"] for i, m in machines.items()} == {
        m.machine_id: {"hostname": m.name} for m in trio.machines
    }


@pytest.mark.parametrize(
    "op",
    [
        pytest.param({"op": "noop", "path": "/{id}/metadata/foo", "value": "bar"}, id="bad-op"),
        pytest.param({"op": "add", "path": "/{id}/foo", "value": "bar"}, id="bad-path"),
        pytest.param({"op": "add", "path": "/{id}/metadata/foo", "value": ""}, id="empty-value"),
    ],
)
def test_machines_patch_bad(trio: Cluster, op: dict[str, str]) -> None:
    """TestMachinesPatchBad: a bad op, path or empty value is a 400 with JSON, and
    nothing is written."""
    m0 = trio.machines[0]
    body = [{**op, "path": op["path"].format(id=m0.machine_id)}]
    with api(trio) as client:
        resp = patch(client, body)
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"].startswith(JSON)
        assert resp.json()["error"]["code"] == 400
        assert machines_by_id(client)[m0.machine_id]["metadata"] == {"hostname": m0.name}


# ---------------------------------------------------------------- environment and help


@pytest.mark.parametrize(
    "driver",
    [pytest.param({}, id="default-api-driver"), pytest.param({"FLEETCTL_DRIVER": "api"}, id="api")],
)
def test_fleetctl_with_env(trio: Cluster, driver: dict[str, str]) -> None:
    """TestFleetctlWithEnv: ``FLEETCTL_ENDPOINT`` instead of ``--endpoint`` works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")}
    env |= {"FLEETCTL_ENDPOINT": f"http://{trio.machines[1].ip}:{API_PORT}", **driver}
    proc = ok(
        subprocess.run(
            [FLEETCTL, "list-machines", "--no-legend", "--full", "--fields", "machine"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
    )
    assert sorted(proc.stdout.split()) == sorted(m.machine_id for m in trio.machines)


@pytest.mark.parametrize(
    "where",
    [pytest.param("host", id="host"), pytest.param("machine", id="inside-a-machine")],
)
def test_client_version_help_output(trio: Cluster, where: str) -> None:
    """TestClientVersionHelpOutput: ``fleetctl help`` shows the version (on the host,
    and with the fleetctl installed in the machines)."""
    if where == "host":
        proc = subprocess.run(
            [FLEETCTL, "help"], capture_output=True, text=True, timeout=30, check=False
        )
    else:
        proc = trio.exec(trio.machines[0], ["fleetctl", "help"])
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout
    assert re.search(rf"\b{re.escape(__version__)}\b", proc.stdout)
