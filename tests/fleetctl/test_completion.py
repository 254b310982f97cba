"""Shell completion (B18): the bash script sourced in a real bash, its ``_fleetctl``
called as bash's programmable completion would, with COMPREPLY checked; candidates
from a real cluster (the API on a socket, and etcd directly) and a real directory."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from fleet import units
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine
from fleet.core.unitfile import UnitFile
from fleetctl.completion import SCRIPTS, complete, local_unit_files
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import RUN_TIMEOUT, env, run

pytestmark = pytest.mark.etcd

M1 = "aaaa1111" + "1" * 24
UNIT = UnitFile.parse("[Service]\nExecStart=/bin/sleep 1000\n")
BIN = str(Path(sys.executable).parent)  # this venv's fleetctl script

CALL = """
source "$1"
shift
COMP_LINE="$1"
COMP_POINT=${#COMP_LINE}
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_fleetctl
printf '%s\\n' "${COMPREPLY[@]}"
"""


async def comp_reply(script: Path, cwd: Path, words: Sequence[str]) -> list[str]:
    """COMPREPLY for the command line ``words`` (bash's own split: '=' is a word)."""
    line = " ".join(words).replace(" = ", "=").replace(" =", "=")
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        CALL,
        "bash",
        str(script),
        line,
        *words,
        cwd=cwd,
        env=env({"PATH": f"{BIN}:{os.environ['PATH']}"}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(RUN_TIMEOUT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [line for line in out.decode().splitlines() if line]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str) -> None:
    result = run("completion", shell)
    assert (result.code, result.err) == (0, "")
    assert result.out == SCRIPTS[shell]
    assert "__complete" in result.out


def test_completion_refuses_an_unknown_shell() -> None:
    result = run("completion", "tcsh")
    assert result.code == 2
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.err


@async_test
async def test_bash_completes_commands_flags_units_and_machines(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    script = tmp_path / "fleetctl.bash"
    script.write_text(SCRIPTS["bash"])
    (tmp_path / "local.service").write_text(UNIT.serialize())
    (tmp_path / "notes.txt").write_text("not a unit\n")
    (tmp_path / "more").mkdir()
    async with served_api(etcd, etcd_prefix) as api:
        await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=60)
        await units.create_unit(api.registry, "hello.service", UNIT, DesiredState.LAUNCHED)
        await units.create_unit(api.registry, "hola.service", UNIT, DesiredState.INACTIVE)
        api_flag = f"--endpoint=unix://{api.socket_path}"
        etcd_flags = [
            "--driver",
            "etcd",
            "--endpoint",
            etcd.endpoint,
            "--etcd-key-prefix",
            etcd_prefix,
        ]

        async def reply(*words: str) -> list[str]:
            return await comp_reply(script, tmp_path, ["fleetctl", *words])

        assert await reply("list-u") == ["list-unit-files", "list-units"]
        assert "completion" in await reply("")
        assert "__complete" not in await reply("")
        assert await reply("--dri") == ["--driver"]
        assert await reply("--driver", "=", "e") == ["etcd"]
        assert await reply("list-units", "--st") == ["--state"]
        assert await reply("status", "-o", "j") == ["json"]
        # Unit names from the cluster, over the API ...
        endpoint, _, value = api_flag.partition("=")
        assert await reply(endpoint, "=", value, "status", "h") == [
            "hello.service",
            "hola.service",
        ]
        # ... and over etcd, with local unit files (and directories) for start.
        assert await reply(*etcd_flags, "start", "") == [
            "local.service",
            "more/",
            "hello.service",
            "hola.service",
        ]
        assert await reply(*etcd_flags, "cordon", "") == [M1]
        assert await reply(*etcd_flags, "ssh", "--machine", "a") == [M1]
        # No cluster there: nothing from it, silently; flags still complete.
        gone = ["--endpoint", "unix:///nonexistent/fleet.sock"]
        assert await reply(*gone, "destroy", "") == []
        assert await reply(*gone, "destroy", "--no") == ["--no-block"]


def test_local_unit_files_offers_unit_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a.service").write_text("")
    (tmp_path / "b.timer").write_text("")
    (tmp_path / "c.txt").write_text("")
    (tmp_path / ".hidden.service").write_text("")
    (tmp_path / "sub").mkdir()
    prefix = f"{tmp_path}/"
    assert local_unit_files(prefix) == [f"{prefix}a.service", f"{prefix}b.timer", f"{prefix}sub/"]
    assert local_unit_files(f"{tmp_path}/nothing/") == []


def test_complete_positions_without_a_cluster() -> None:
    asked: list[str] = []

    def query(what: str) -> list[str]:
        asked.append(what)
        return {"units": ["x.service"], "machines": [M1]}[what]

    assert complete(["set-metadata", ""], query) == [M1]
    assert complete(["set-metadata", M1, ""], query) == []
    assert complete(["help", "li"], query) == ["list-machines", "list-unit-files", "list-units"]
    assert complete(["journal", "--lines", ""], query) == []
    assert complete(["journal", "--lines", "5", ""], query) == ["x.service"]
    assert complete(["nosuchcommand", ""], query) == []
    assert asked == ["machines", "units"]
