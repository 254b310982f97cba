"""``fleetctl events`` through both drivers: the table, JSON, filters, a follow
ended by Ctrl-C (exit 0, no "Aborted!") and one-line errors for bad input (B13).

No engine runs here: the events are recorded as the engine and agents would."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.events import EventFactory, EventKind
from fleet.core.model import Machine
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import command, driver_flags, env, one_line, run_async

M1 = "ee01" + "1" * 28
M2 = "ee02" + "2" * 28

pytestmark = pytest.mark.etcd


def _history(now: float) -> list:  # type: ignore[type-arg]
    f = EventFactory("test")
    return [
        f.make(now - 60, EventKind.PLACED, unit="a.service", machine=M1,
               message="placed on ee011111",
               reason="placed on the least-loaded machine that satisfies its requirements"),
        f.make(now - 50, EventKind.STARTED, unit="a.service", machine=M1, message="started",
               result="done"),
        f.make(now - 40, EventKind.MACHINE_LEFT, machine=M1, message="machine lost"),
        f.make(now - 40, EventKind.UNSCHEDULED, unit="a.service", machine=M1,
               message="unscheduled from ee011111",
               reason="unscheduled: its target machine went away"),
        f.make(now - 40, EventKind.MOVED, unit="a.service", machine=M2,
               message="moved from ee011111 to ee022222"),
        f.make(now - 30, EventKind.PLACED, unit="b.service", machine=M2,
               message="placed on ee022222"),
        f.make(now - 7200, EventKind.LOADED, unit="old.service", machine=M2, message="loaded"),
    ]  # fmt: skip


def test_events_table_json_and_filters_agree_across_drivers(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=30)
            await api.registry.record_events(_history(time.time()))
            outputs = {}
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                table = await run_async(*flags, "events", "a.service")
                assert table.code == 0, table.err
                lines = table.out.splitlines()
                assert lines[0].split() == ["TIME", "UNIT", "MACHINE", "EVENT", "MESSAGE"]
                cells = [[c for c in line.split("\t") if c] for line in lines[1:]]
                kinds = [c[3] for c in cells]
                assert kinds == ["placed", "started", "machine-left", "unscheduled", "moved"], (
                    driver
                )
                assert cells[0][2] == "ee011111..."
                assert "least-loaded" in cells[0][4]
                assert cells[1][4] == "started [done]"

                js = await run_async(*flags, "events", "a.service", "-o", "json")
                assert js.code == 0, js.err
                parsed = json.loads(js.out)
                assert [e["kind"] for e in parsed] == kinds
                assert set(parsed[0]) == {
                    "id", "time", "kind", "unit", "machine", "message", "reason", "result"
                }  # fmt: skip
                assert parsed[2]["unit"] is None
                assert parsed[0]["time"].endswith("Z")
                outputs[driver] = parsed

                recent = await run_async(*flags, "events", "--since", "1h", "--no-legend", "--full")
                assert recent.code == 0, recent.err
                assert "old.service" not in recent.out
                assert len(recent.out.splitlines()) == 6
                assert M1 in recent.out  # --full: whole machine ids

                # A live machine by a prefix; limit keeps the newest.
                on_m2 = await run_async(*flags, "events", "--machine", "ee02", "-o", "json")
                assert [e["unit"] for e in json.loads(on_m2.out)] == [
                    "old.service", "a.service", "b.service"
                ]  # fmt: skip
                last = await run_async(*flags, "events", "--limit", "1", "-o", "json")
                assert [e["unit"] for e in json.loads(last.out)] == ["b.service"]
                # A machine that left, by its full id.
                gone = await run_async(*flags, "events", "--machine", M1, "-o", "json")
                assert len(json.loads(gone.out)) == 4
            assert outputs["api"] == outputs["etcd"]

    run()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "invalid time 'yesterday'"),
        (("--since", "-5m"), "must not be negative"),
        (("--since", "2026-01-02T03:04:05"), "with a time zone"),
        (("bad/name.service",), "invalid unit name"),
        (("--limit", "0"), "0 is not in the range"),
    ],
)
def test_bad_input_is_one_line_and_exits_non_zero(
    etcd: EtcdProcess, etcd_prefix: str, args: tuple[str, ...], message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                done = await run_async(*flags, "events", *args)
                assert done.code != 0, driver
                assert done.out == ""
                assert message in done.err.strip().splitlines()[-1], (driver, done.err)
                if "range" not in message:  # click's usage errors carry a usage line
                    one_line(done.err)

    run()


def test_follow_prints_new_events_and_ctrl_c_ends_it_cleanly(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            f = EventFactory("test")
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                unit = f"c-{driver}.service"
                await api.registry.record_events(
                    [f.make(time.time(), EventKind.PLACED, unit=unit, machine=M1)]
                )
                proc = await asyncio.create_subprocess_exec(
                    *command(*flags, "events", unit, "-f", "-o", "json"),
                    env=env(),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                assert proc.stdout is not None
                async with asyncio.timeout(20):
                    first = json.loads(await proc.stdout.readline())
                assert first["kind"] == "placed"
                new = f.make(time.time(), EventKind.STARTED, unit=unit, machine=M1)
                await api.registry.record_events([new])
                async with asyncio.timeout(20):
                    second = json.loads(await proc.stdout.readline())
                assert (second["id"], second["kind"]) == (new.id, "started"), driver
                proc.send_signal(signal.SIGINT)
                async with asyncio.timeout(20):
                    rest, err = await proc.communicate()
                assert proc.returncode == 0, (driver, err)
                assert b"Aborted" not in err
                assert err == b"", driver
                assert rest == b""

    run()
