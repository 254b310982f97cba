"""Run the real ``fleetctl`` as a subprocess, the way users and scripts do."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "tests" / "fixtures" / "units"
RUN_TIMEOUT = 30.0  # seconds one fleetctl process may take


def env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    result = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")}
    # The checkout must win over whatever an (editable) install resolves from
    # another working directory.
    result["PYTHONPATH"] = str(REPO)
    result.update(extra or {})
    return result


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetctl", *args]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run(
    *args: str,
    cwd: Path = UNITS,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = RUN_TIMEOUT,
) -> Result:
    done = subprocess.run(
        command(*args),
        cwd=cwd,
        env=env(extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


async def run_async(*args: str, cwd: Path = UNITS) -> Result:
    """For tests that play the engine/agent while fleetctl waits (bounded by
    RUN_TIMEOUT; a caller wanting less wraps it in ``asyncio.timeout``)."""
    proc = await asyncio.create_subprocess_exec(
        *command(*args),
        cwd=cwd,
        env=env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(RUN_TIMEOUT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def etcd_flags(endpoint: str, prefix: str) -> tuple[str, ...]:
    return ("--driver=etcd", f"--endpoint={endpoint}", f"--etcd-key-prefix={prefix}")


def driver_flags(socket_path: str | Path, endpoint: str, prefix: str) -> dict[str, tuple[str, ...]]:
    """fleetctl's flags for each driver: the API on ``socket_path``, etcd at ``endpoint``."""
    return {"api": (f"--endpoint=unix://{socket_path}",), "etcd": etcd_flags(endpoint, prefix)}


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    return lines[0]


def write_units(directory: Path, names: Sequence[str], body: str) -> None:
    for name in names:
        (directory / name).write_text(body)
