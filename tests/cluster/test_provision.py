"""fleetd provisioning into a root dir: what Vagrant VMs and fleet-cluster machines get.

CI cannot boot VMs, so the entry point ``vagrant/provision.sh`` calls
(``python -m fleet.cluster provision --root ...``) runs here against a temp root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet.cluster.provision import default_fleetd, provision_machine, scripts_dir
from fleet.config import load_config
from fleet.errors import InvalidConfig

FLEETD = Path("/opt/fleet/venv/bin/fleetd")


def _provision(root: Path, **overrides: object) -> list[Path]:
    options: dict[str, object] = {
        "etcd_servers": ["http://172.28.0.11:2379", "http://172.28.0.12:2379"],
        "public_ip": "172.28.0.11",
        "metadata": {"az": "west", "hostname": "core-01"},
        "agent_ttl": "5s",
        "extra_config": {"etcd_key_prefix": "/fleet-test/", "verbosity": "2"},
        "fleet_bin": FLEETD,
    }
    options.update(overrides)
    return provision_machine(root, **options)  # type: ignore[arg-type]


def test_fleet_conf_is_what_fleetd_reads(tmp_path: Path) -> None:
    _provision(tmp_path)
    config, warnings = load_config(str(tmp_path / "etc/fleet/fleet.conf"), {})
    assert warnings == []
    assert config.etcd_servers == ("http://172.28.0.11:2379", "http://172.28.0.12:2379")
    assert config.public_ip == "172.28.0.11"
    assert dict(config.metadata) == {"az": "west", "hostname": "core-01"}
    assert config.agent_ttl == 5.0
    assert config.etcd_key_prefix == "/fleet-test/"
    assert config.verbosity == 2


def test_units_point_at_the_absolute_fleetd_and_are_enabled(tmp_path: Path) -> None:
    _provision(tmp_path)
    system = tmp_path / "etc/systemd/system"
    service = (system / "fleet.service").read_text()
    assert f"ExecStart={FLEETD}\n" in service
    assert "@FLEETD@" not in service
    assert "RestartSec=10s" in service
    socket = (system / "fleet.socket").read_text()
    assert "ListenStream=/var/run/fleet.sock" in socket
    assert "SocketMode=0660" in socket
    for unit in ("fleet.service", "fleet.socket"):
        link = system / "multi-user.target.wants" / unit
        assert link.is_symlink()
        assert str(link.readlink()) == f"/etc/systemd/system/{unit}"
    assert not (system / "fleet-tcp.socket").exists()
    assert not (system / "fleet.service.d").exists()
    for tool in ("fleetctl", "fleetd"):
        link = tmp_path / "usr/local/bin" / tool
        assert str(link.readlink()) == str(Path(FLEETD).parent / tool)


def test_an_installation_in_usr_local_bin_is_not_linked_over_itself(tmp_path: Path) -> None:
    # `pip install` outside a venv puts the scripts in /usr/local/bin: the machine
    # sees them there, and on a VM (root /) a link would replace each with itself.
    written = _provision(tmp_path, fleet_bin=Path("/usr/local/bin/fleetd"))
    service = (tmp_path / "etc/systemd/system/fleet.service").read_text()
    assert "ExecStart=/usr/local/bin/fleetd\n" in service
    assert not (tmp_path / "usr/local/bin").exists()
    assert not any("usr/local/bin" in str(p) for p in written)


def test_the_scripts_are_found_where_pip_put_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a venv beside the interpreter; outside one (a system interpreter whose
    scripts went to /usr/local/bin or ~/.local/bin) where the install recorded them."""
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "fleetd").is_file()
    assert scripts_dir() == venv_bin
    monkeypatch.setattr(sys, "executable", "/nonexistent/bin/python3")
    assert scripts_dir().resolve() == venv_bin.resolve()
    assert default_fleetd().resolve() == (venv_bin / "fleetd").resolve()


@pytest.mark.parametrize(
    ("default_target", "expected"),
    [
        (None, "multi-user.target"),
        ("fleet-node.target", "fleet-node.target"),
        ("/lib/systemd/system/graphical.target", "multi-user.target"),
    ],
    ids=["no-default", "fleet-cluster-machine", "graphical-vm"],
)
def test_units_are_enabled_in_the_target_the_machine_boots(
    tmp_path: Path, default_target: str | None, expected: str
) -> None:
    system = tmp_path / "etc/systemd/system"
    if default_target is not None:
        system.mkdir(parents=True)
        (system / "default.target").symlink_to(default_target)
    _provision(tmp_path)
    assert (system / f"{expected}.wants" / "fleet.service").is_symlink()


def test_api_port_and_restart_sec_options(tmp_path: Path) -> None:
    _provision(tmp_path, api_port=54728, restart_sec="1s")
    system = tmp_path / "etc/systemd/system"
    tcp = (system / "fleet-tcp.socket").read_text()
    assert "ListenStream=54728\n" in tcp
    assert "Service=fleet.service" in tcp
    assert (system / "multi-user.target.wants/fleet-tcp.socket").is_symlink()
    # fleet.service pulls it in: a start after a stop brings the TCP API back.
    assert (system / "fleet.service.wants/fleet-tcp.socket").is_symlink()
    assert "Before=fleet.service" in tcp
    assert (system / "fleet.service.d/50-fleet-cluster.conf").read_text() == (
        "[Service]\nRestartSec=1s\n"
    )
    # provisioning again without the option removes the drop-in (idempotent re-provision)
    _provision(tmp_path)
    assert not (system / "fleet.service.d/50-fleet-cluster.conf").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fleet_bin": Path("venv/bin/fleetd")}, "absolute"),
        ({"agent_ttl": "5 seconds"}, "agent_ttl"),
        ({"metadata": {"az": "a,b"}}, "metadata"),
        ({"metadata": {"": "x"}}, "metadata"),
        ({"etcd_servers": []}, "etcd_servers"),
        ({"extra_config": {"Bad Key": "1"}}, "extra config"),
        ({"api_port": 70000}, "api_port"),
        ({"restart_sec": "soon"}, "restart_sec"),
    ],
    ids=[
        "relative-fleetd",
        "bad-ttl",
        "comma-in-metadata",
        "empty-key",
        "no-etcd",
        "bad-config-key",
        "bad-port",
        "bad-restart-sec",
    ],
)
def test_bad_options_are_refused_before_writing(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidConfig, match=message):
        _provision(tmp_path, **overrides)
    assert not (tmp_path / "etc/fleet/fleet.conf").exists()


def test_vagrant_entry_point_writes_the_same_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet.cluster",
            "provision",
            "--root",
            str(tmp_path),
            "--etcd-servers",
            "http://172.28.0.11:2379,http://172.28.0.12:2379",
            "--public-ip",
            "172.28.0.12",
            "--metadata",
            "az=west, role=web",
            "--agent-ttl",
            "10s",
            "--fleetd",
            str(FLEETD),
            "--config",
            "verbosity=1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "etc/fleet/fleet.conf") in proc.stdout.splitlines()
    config, _ = load_config(str(tmp_path / "etc/fleet/fleet.conf"), {})
    assert (config.public_ip, config.agent_ttl, dict(config.metadata)) == (
        "172.28.0.12",
        10.0,
        {"az": "west", "role": "web"},
    )
    assert f"ExecStart={FLEETD}" in (tmp_path / "etc/systemd/system/fleet.service").read_text()


def test_vagrant_entry_point_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet.cluster",
            "provision",
            "--root",
            str(tmp_path),
            "--etcd-servers",
            "http://x:2379",
            "--metadata",
            "novalue",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "metadata" in proc.stderr


def test_vagrant_provision_script_invocation_runs_against_a_temp_root(tmp_path: Path) -> None:
    """The exact provisioning command of vagrant/provision.sh, with / swapped for a temp root."""
    repo = Path(__file__).resolve().parents[2]
    lines = (repo / "vagrant/provision.sh").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"$VENV/bin/python" -m'))
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    command = "\n".join(lines[start : end + 1]).replace("--root /", f"--root {tmp_path}")
    script = "\n".join(
        [
            "set -euo pipefail",
            f"VENV={Path(sys.executable).parent.parent}",
            "FLEET_IP=172.28.0.13 ETCD_SERVERS=http://172.28.0.11:2379,http://172.28.0.13:2379",
            "FLEET_METADATA=hostname=core-03,az=zone-2",
            command.replace("/vagrant/units", str(repo / "units")),
        ]
    )
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    config, _ = load_config(str(tmp_path / "etc/fleet/fleet.conf"), {})
    assert config.public_ip == "172.28.0.13"
    assert dict(config.metadata) == {"hostname": "core-03", "az": "zone-2"}
    assert config.agent_ttl == 30.0
    service = (tmp_path / "etc/systemd/system/fleet.service").read_text()
    assert f"ExecStart={Path(sys.executable).parent / 'fleetd'}\n" in service
    assert (tmp_path / "etc/systemd/system/multi-user.target.wants/fleet.socket").is_symlink()
