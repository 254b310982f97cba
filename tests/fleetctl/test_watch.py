"""``--watch`` on the list commands, over both drivers: driven by watches, ended by Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
from typing import Any

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import Machine
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import command, driver_flags, env

M1 = "1" * 32
M2 = "2" * 32
UNIT = {
    "desiredState": "loaded",
    "options": [{"section": "Service", "name": "ExecStart", "value": "/bin/true"}],
}


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command(*args),
        env=env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(10):
        line = await proc.stdout.readline()
    assert line, "fleetctl ended its watch"
    return line.decode()


async def _notice(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    notice: dict[str, Any] = json.loads(await _line(proc))
    return notice


async def _interrupt(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(10):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@async_test
async def test_json_watch_reports_each_changed_row_on_both_drivers(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=30)
        flags = driver_flags(api.socket_path, etcd.endpoint, etcd_prefix)
        for driver, driver_args in flags.items():
            proc = await _start(*driver_args, "list-machines", "--watch", "-o", "json")
            first = await _notice(proc)
            assert (first["change"], first["machine_id"]) == ("added", M1), driver
            assert await _notice(proc) == {"change": "synced"}, driver

            lease = await api.registry.register_machine(
                Machine(M2, "10.0.0.2", {"az": "b"}), ttl=30
            )
            added = await _notice(proc)
            assert (added["change"], added["machine_id"], added["metadata"]) == (
                "added",
                M2,
                {"az": "b"},
            ), driver
            await api.registry.unregister_machine(lease)
            removed = await _notice(proc)
            assert (removed["change"], removed["machine_id"]) == ("removed", M2), driver

            code, err = await _interrupt(proc)
            assert (code, err) == (0, ""), driver


@async_test
async def test_table_watch_off_a_terminal_prints_the_table_again(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        flags = driver_flags(api.socket_path, etcd.endpoint, etcd_prefix)
        names: list[str] = []
        for driver, driver_args in flags.items():
            proc = await _start(*driver_args, "list-unit-files", "--watch", "--fields=unit,dstate")
            assert (await _line(proc)).split() == ["UNIT", "DSTATE"], driver
            for name in names:
                assert (await _line(proc)).split() == [name, "loaded"], driver
            names.append(f"w-{driver}.service")
            put = await api.client.put(f"/fleet/v1/units/{names[-1]}", json=UNIT)
            assert put.status_code == 201
            assert await _line(proc) == "\n", driver
            assert (await _line(proc)).split() == ["UNIT", "DSTATE"], driver
            for name in names:
                assert (await _line(proc)).split() == [name, "loaded"], driver
            code, err = await _interrupt(proc)
            assert (code, err) == (0, ""), driver


@async_test
async def test_table_watch_on_a_terminal_redraws_in_place(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=30)
        leader, follower = pty.openpty()
        try:
            args = (f"--endpoint=unix://{api.socket_path}", "list-machines", "--watch")
            proc = await asyncio.create_subprocess_exec(
                *command(*args), env=env(), stdout=follower, stderr=asyncio.subprocess.PIPE
            )
            os.close(follower)
            follower = -1
            seen = b""

            async def read_until(needle: bytes) -> None:
                nonlocal seen
                async with asyncio.timeout(15):
                    while needle not in seen:
                        seen += await asyncio.to_thread(os.read, leader, 4096)

            await read_until(b"10.0.0.1")
            await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=30)
            await read_until(b"10.0.0.2")
            # The second table is drawn over the first (cursor up, erase line), not after it.
            assert b"\x1b[1A\x1b[2K" in seen
            assert seen.count(b"MACHINE") == 2
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                _, err = await proc.communicate()
            assert (proc.returncode, err) == (0, b"")
        finally:
            os.close(leader)
            if follower >= 0:
                os.close(follower)
