"""Live progress (B12): a blocking multi-unit command on a terminal shows one live row
per unit (rich); off a terminal it prints fleet's exact lines. fleetctl runs as a
subprocess against a real etcd, its stdout on a real pseudo-terminal; the machine
is simulated (engine and agent writes, as an agent would publish them)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import struct
import termios
from collections.abc import Awaitable

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import ScheduleChange
from fleet.registry.etcd import EtcdRegistry
from fleetctl.progress import wants_live
from tests.asyncsupport import async_test, eventually
from tests.fleetctl.support import RUN_TIMEOUT, UNITS, command, env, etcd_flags, run_async

pytestmark = pytest.mark.etcd

MACHINE_ID = "113f16a7f33e4e2ca5d1d0a0f1bd38bb"
NAMES = ("hello.service", "goodbye.service")
FLEET_LINES = [
    "Unit hello.service inactive",
    "Unit goodbye.service inactive",
    "Unit hello.service launched on 113f16a7.../172.17.8.103",
    "Unit goodbye.service launched on 113f16a7.../172.17.8.103",
]
COLOUR = re.compile(r"\x1b\[(?:\d+;)*3\d(?:;\d+)*m")  # a foreground colour


async def play_machine(registry: EtcdRegistry) -> None:
    """Once fleetctl has asked for both units launched: place and run them."""

    async def both_launched() -> bool:
        jobs = {job.name: job for job in await registry.list_jobs()}
        return all(
            name in jobs and jobs[name].desired_state is DesiredState.LAUNCHED for name in NAMES
        )

    await eventually(both_launched, timeout=RUN_TIMEOUT, what="fleetctl start")
    lease = await registry.register_machine(Machine(MACHINE_ID, "172.17.8.103"), ttl=20)
    leadership = await registry.campaign(MACHINE_ID, "0.1.0", ttl=20)
    assert leadership is not None
    for name in NAMES:
        unit_hash = UnitFile.parse((UNITS / name).read_text()).hash
        change = ScheduleChange(name, MACHINE_ID, unit_hash, DesiredState.LAUNCHED)
        await registry.apply_schedule(leadership, [change], {})
        await asyncio.sleep(0.3)  # one poll of fleetctl sees the second one still waiting
        await registry.publish_unit_state(
            lease,
            UnitState(
                name, MACHINE_ID, "loaded", "active", "running", unit_hash, DesiredState.LAUNCHED
            ),
        )


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def on_terminal(flags: tuple[str, ...], extra: dict[str, str]) -> tuple[int, str, str]:
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        *command(*flags, "start", *NAMES),
        cwd=UNITS,
        env=env({"TERM": "xterm-256color", **extra}),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=child,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(child)
    reader: Awaitable[bytes] = asyncio.to_thread(_read_all, main)
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            _, err = await proc.communicate()
            out = await reader
    finally:
        os.close(main)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode()


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "no-color"])
def test_start_on_a_terminal_shows_live_rows(
    etcd: EtcdProcess, etcd_prefix: str, no_color: bool
) -> None:
    @async_test
    async def run() -> None:
        flags = etcd_flags(etcd.endpoint, etcd_prefix)
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as registry:
            extra = {"NO_COLOR": "1"} if no_color else {}
            started = asyncio.create_task(on_terminal(flags, extra))
            await play_machine(registry)
            code, out, err = await started
        assert code == 0, err
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
        for header in ("UNIT", "STATE", "MACHINE", "ELAPSED"):
            assert header in plain
        final = [line.split() for line in plain.splitlines() if "✓" in line]
        assert ["hello.service", "✓", "launched", "113f16a7.../172.17.8.103"] in [
            row[:4] for row in final
        ]
        assert ["goodbye.service", "✓", "active/running", "113f16a7.../172.17.8.103"] in [
            row[:4] for row in final
        ]
        # The live rows replace fleet's lines, for the submit's wait too.
        assert "Waiting for inactive" in plain
        assert "Waiting for launched" in plain
        assert "Waiting for systemd" in plain
        assert "Unit hello.service" not in plain
        assert bool(COLOUR.search(out)) is not no_color

    run()


def test_start_off_a_terminal_prints_fleets_lines(etcd: EtcdProcess, etcd_prefix: str) -> None:
    @async_test
    async def run() -> None:
        flags = etcd_flags(etcd.endpoint, etcd_prefix)
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as registry:
            started = asyncio.create_task(run_async(*flags, "start", *NAMES))
            await play_machine(registry)
            result = await started
        assert result.code == 0, result.err
        assert result.out.splitlines() == FLEET_LINES
        assert "\x1b" not in result.out

    run()


def test_wants_live_only_for_several_units_on_a_terminal() -> None:
    main, child = os.openpty()
    try:
        with os.fdopen(os.dup(child), "w") as tty, open(os.devnull, "w") as pipe:
            assert wants_live(tty, 2, {}) is True
            assert wants_live(tty, 1, {}) is False
            assert wants_live(tty, 3, {"TERM": "dumb"}) is False
            assert wants_live(pipe, 3, {}) is False
    finally:
        os.close(main)
        os.close(child)
