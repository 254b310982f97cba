"""What every fleetctl run pays before its first request (docs/benchmarks.md, "fleetctl
latency"): the import guard (``python -X importtime`` of real runs against a served API,
failing if a module the command does not use appears), no CLI of httpx, no CA bundle
unless the endpoint is https."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import ScheduleChange
from fleetctl.drivers.api import ApiClient
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import RUN_TIMEOUT, env

# Never on the path of `version` and the list commands over the API (unix socket).
HEAVY = (
    "httpx",  # the tunnel's transport only
    "httpcore",
    "anyio",
    "asyncio",  # the API driver needs no event loop
    "paramiko",  # --tunnel only
    "cryptography",
    "pydantic",  # the server's
    "fastapi",
    "uvicorn",
    "aetcd",  # --driver=etcd only
    "grpc",
    "ssl",  # https only
    "subprocess",  # the commands that run something
    "fleet.api",
    "fleet.registry.etcd",
    "fleet.core.scheduler",
    "fleet.core.requirements",  # a listing validates no requirements
    "rich",
    "pygments",
)
# The plain list commands run without click (fleetctl.fastpath) ...
NOT_FOR_LISTS = (*HEAVY, "click", "fleetctl.cli", "fleetctl.commands")
# ... and `version` is answered before anything of fleetctl is imported.
NOT_FOR_VERSION = (*NOT_FOR_LISTS, "fleetctl.fastpath", "fleet.core", "json", "socket", "hashlib")
# list-units and list-machines build no unit file.
NOT_FOR_STATES = (*NOT_FOR_LISTS, "fleet.core.unitfile", "fleet.core.views", "hashlib")


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m fleetctl ARGS``: the run and every module it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fleetctl", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env(),
        check=False,
    )
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, names


def unwanted(names: set[str], banned: Sequence[str]) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


@pytest.mark.parametrize("args", [("version",), ("--version",), ("-v",)])
def test_version_imports_nothing_it_does_not_use(args: tuple[str, ...]) -> None:
    proc, names = imported(*args)
    assert proc.returncode == 0
    assert proc.stdout.startswith("fleetctl version ")
    assert "fleetctl.entry" in names  # the probe saw the run
    assert unwanted(names, NOT_FOR_VERSION) == []


def test_fd_forward_imports_no_cli(tmp_path: Path) -> None:
    """It runs on the bastion for every --tunnel connection."""
    proc, names = imported("fd-forward", str(tmp_path / "none.sock"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("unable to connect to ")
    assert "fleetctl.fdforward" in names
    assert unwanted(names, NOT_FOR_LISTS) == []


@async_test
async def test_list_commands_import_nothing_they_do_not_use(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    unit = UnitFile.parse("[Unit]\nDescription=probe\n\n[Service]\nExecStart=/bin/true\n")
    machine = Machine("a" * 32, "10.9.9.9", {"role": "probe"})
    async with served_api(etcd, etcd_prefix) as api:
        lease = await api.registry.register_machine(machine, 10)
        await api.registry.create_unit(
            "p.service", unit.serialize(), unit.hash, DesiredState.LAUNCHED, is_global=False
        )
        leader = await api.registry.campaign(machine.id, "1", 10.0)
        assert leader is not None
        await api.registry.apply_schedule(
            leader, [ScheduleChange("p.service", machine.id, unit.hash)], {}
        )
        state = UnitState("p.service", machine.id, "loaded", "active", "running", unit.hash)
        await api.registry.publish_unit_state(lease, state)
        endpoint = f"--endpoint=unix://{api.socket_path}"
        cases = [
            ("list-machines", "10.9.9.9", NOT_FOR_STATES),
            ("list-units", "p.service", NOT_FOR_STATES),
            ("list-unit-files", unit.hash[:7], NOT_FOR_LISTS),
        ]
        for command, shown, banned in cases:
            # The server answers from this event loop: the fleetctl run waits in a thread.
            proc, names = await asyncio.to_thread(imported, endpoint, command)
            assert (command, proc.returncode) == (command, 0), proc.stderr[-2000:]
            assert shown in proc.stdout
            assert "fleetctl.render" in names
            assert (command, unwanted(names, banned)) == (command, [])


def spy_contexts(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Record every default TLS context built (httpx and fleetctl both use this call)."""
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def spy(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", spy)
    return made


PROBE = """
import sys
import fleetctl.cli, fleetctl.drivers.api, fleetctl.render
print(",".join(m for m in ("httpx._main", "rich", "pygments") if sys.modules.get(m)))
"""


def test_httpx_command_line_client_is_not_imported() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("unix:///var/run/fleet.sock", id="unix"),
        pytest.param("http://127.0.0.1:54728", id="http"),
    ],
)
def test_plain_endpoints_build_no_tls_context(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = spy_contexts(monkeypatch)
    client = ApiClient(endpoint, timeout=1.0)
    asyncio.run(client.aclose())
    assert loaded == []


def test_https_endpoint_still_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = spy_contexts(monkeypatch)
    client = ApiClient("https://127.0.0.1:54728", timeout=1.0)
    asyncio.run(client.aclose())
    assert len(loaded) == 1, "an https endpoint must build its verifying context"
