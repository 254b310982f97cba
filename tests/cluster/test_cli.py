"""``fleet-cluster`` end to end (as a separate process, as users run it) and its refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from fleet.cluster import cli

STATE = Path("/tmp/fcc")
LAYOUT_ARGS = ["--prefix", "fccn", "--subnet", "10.251.46", "--bridge", "fccbr"]


def _fleet_cluster(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cluster", "--state-dir", str(STATE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _etcd_healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/health", timeout=1) as r:
            return b'"health":"true"' in r.read()
    except OSError:
        return False


def test_up_status_exec_down(fake_fleetd: Path) -> None:
    try:
        up = _fleet_cluster(
            "up",
            "--machines",
            "2",
            "--agent-ttl",
            "3s",
            "--etcd-port",
            "0",
            "--fleetd",
            str(fake_fleetd),
            "--metadata",
            "role=web",
            *LAYOUT_ARGS,
        )
        assert up.returncode == 0, up.stderr
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        assert env["FLEETCTL_DRIVER"] == "etcd"
        assert env["FLEETCTL_SSH_USERNAME"] == "root"
        endpoint = env["FLEETCTL_ENDPOINT"]
        assert endpoint.startswith("http://10.251.46.1:")
        # etcd outlived the `up` process
        assert _etcd_healthy(endpoint)
        assert _fleet_cluster("env").stdout == up.stdout
        # This installation's fleetctl first on PATH, the cluster's key and its
        # machines' host keys: fleetctl ssh/status/--tunnel never prompt.
        assert env["PATH"] == f'"{Path(sys.executable).parent}:$PATH"'
        assert Path(env["FLEETCTL_SSH_IDENTITY_FILE"]).is_file()
        known = Path(env["FLEETCTL_KNOWN_HOSTS_FILE"]).read_text().splitlines()
        assert [line.split()[:2] for line in known] == [
            ["10.251.46.11", "ssh-ed25519"],
            ["10.251.46.12", "ssh-ed25519"],
        ]
        # Another cluster may not take this one's bridge, subnet or prefix.
        for clash, value in (
            ("--bridge", "fccbr"),
            ("--subnet", "10.251.46"),
            ("--prefix", "fccn"),
        ):
            args = dict(zip(LAYOUT_ARGS[::2], LAYOUT_ARGS[1::2], strict=True))
            args.update({"--bridge": "fccbr2", "--subnet": "10.251.47", "--prefix": "fccm"})
            args[clash] = value
            other = subprocess.run(
                [sys.executable, "-m", "fleet.cluster", "--state-dir", "/tmp/fcc2", "up",
                 "--no-fleetd", *[x for pair in args.items() for x in pair]],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert other.returncode != 0
            assert f"is used by the live cluster in {STATE}" in other.stderr
            assert len(other.stderr.strip().splitlines()) == 1
        assert _etcd_healthy(endpoint)  # the refused ups left this cluster alone

        status = _fleet_cluster("status")
        assert status.returncode == 0, status.stderr
        rows = [line.split() for line in status.stdout.splitlines()[2:]]
        assert [(r[0], r[1], r[3], r[4], r[5]) for r in rows] == [
            ("fccn1", "10.251.46.11", "running", "active", "yes"),
            ("fccn2", "10.251.46.12", "running", "active", "yes"),
        ]

        assert _fleet_cluster("exec", "fccn2", "--", "sh", "-c", "exit 7").returncode == 7
        hostname = _fleet_cluster("exec", "fccn2", "--", "hostname")
        assert hostname.stdout.strip() == "fccn2"
        conf = _fleet_cluster("exec", "fccn1", "--", "cat", "/etc/fleet/fleet.conf").stdout
        assert "metadata=hostname=fccn1,role=web" in conf

        assert _fleet_cluster("kill", "fccn2").returncode == 0
        assert "off" in _fleet_cluster("status").stdout.splitlines()[-1]
        assert _fleet_cluster("restart", "fccn2").returncode == 0
        assert _fleet_cluster("status").stdout.splitlines()[-1].split()[3] == "running"
        pid = int((STATE / "etcd.pid").read_text())
    finally:
        down = _fleet_cluster("down", *LAYOUT_ARGS[:2], *LAYOUT_ARGS[4:])
    assert down.returncode == 0, down.stderr
    assert not STATE.exists()
    assert not Path("/sys/class/net/fccbr").exists()
    assert not Path("/sys/class/net/fccbr2").exists()
    assert (
        not Path(f"/proc/{pid}/cmdline").exists()
        or b"etcd" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    )


@pytest.mark.parametrize("command", ["status", "env", "kill"], ids=["status", "env", "kill"])
def test_commands_without_a_cluster_fail_in_one_line(command: str) -> None:
    proc = _fleet_cluster(*([command, "fccn1"] if command == "kill" else [command]))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "fleet-cluster up" in proc.stderr


def test_non_root_is_refused_in_one_line() -> None:
    # The venv lives under /root (mode 700), so the unprivileged run uses the
    # system python on the same checkout; nodes.py imports only the stdlib.
    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys\nfrom fleet.cluster.nodes import check_host\nfrom fleet.errors import "
        "FleetError\ntry:\n    check_host()\nexcept FleetError as e:\n    print(e, "
        "file=sys.stderr)\n    sys.exit(1)\n"
    )
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(repo)},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == "must run as root (machines need mounts, netns and cgroups)\n"


@pytest.mark.parametrize(
    "argv",
    [["up", "--machines", "1"], ["down"], ["status"], ["kill", "x"], ["exec", "x", "--", "true"]],
    ids=["up", "down", "status", "kill", "exec"],
)
def test_cli_refuses_non_root_before_touching_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["--state-dir", "/tmp/fc-never", *argv]) == 1
    err = capsys.readouterr().err
    assert err == "fleet-cluster: must run as root (machines need mounts, netns and cgroups)\n"
    assert not Path("/tmp/fc-never").exists()
