"""``cordon``, ``uncordon`` and ``drain`` through both drivers (the API's extension
endpoints and the etcd driver reach the same use cases in :mod:`fleet.maintenance`).

No engine runs here: these tests check what fleetctl asks for and shows; the
engine's side of a drain is tested in tests/engine/test_drain.py.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.maintenance import DrainPhase, DrainStatus, MoveState, UnitMove
from fleet.core.model import Machine
from tests.api.support import served_api
from tests.asyncsupport import async_test, eventually
from tests.fleetctl.support import command, driver_flags, env, one_line, run_async
from tests.registry.support import dump

M1 = "dd01" + "1" * 28
M2 = "dd02" + "2" * 28

pytestmark = pytest.mark.etcd


def test_cordon_drain_status_and_uncordon_agree_across_drivers(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=30)
            await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=30)
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                done = await run_async(*flags, "cordon", "dd01", "--reason", "kernel 6.1")
                assert (done.code, done.out, done.err) == (0, f"Cordoned machine {M1}\n", "")
                listed = await run_async(*flags, "list-machines", "--fields", "machine,cordon")
                assert listed.out.splitlines()[1:] == [
                    "dd011111...\tkernel 6.1",
                    "dd022222...\t-",
                ], driver
                machines = {m.id: m for m in await api.registry.list_machines()}
                assert machines[M1].cordon == "kernel 6.1"

                done = await run_async(*flags, "drain", "dd01", "--max-parallel", "3", "--no-block")
                assert done.code == 0, done.err
                assert done.out == f"Draining machine {M1} (max-parallel 3)\n"
                _, request, _ = await api.registry.get_maintenance(M1)
                assert request is not None
                assert (request.max_parallel, request.min_healthy) == (3, 5.0)
                # The engine's progress, as an engine would write it, read back by --status.
                status = DrainStatus(
                    DrainPhase.DRAINING,
                    request.started,
                    {"a.service": UnitMove(MoveState.MOVING, M2, "starting")},
                    "1 moving",
                )
                leader = await api.registry.campaign("test-engine", "1", 30)
                assert leader is not None
                await api.registry.apply_schedule(leader, [], {}, {M1: status})
                shown = await run_async(*flags, "drain", "--status")
                assert shown.code == 0, shown.err
                assert f"Machine {M1}: cordoned (kernel 6.1)" in shown.out
                assert "Drain: draining (1 moving) [max-parallel 3" in shown.out
                assert "a.service\tmoving\tdd022222\tstarting" in shown.out
                await api.registry.resign(leader)

                done = await run_async(*flags, "uncordon", "dd01")
                assert (done.code, done.out) == (0, f"Uncordoned machine {M1}\n"), done.err
                assert await api.registry.get_maintenance(M1) == (None, None, None)
                again = await run_async(*flags, "uncordon", "dd01")
                assert again.code == 1
                assert one_line(again.err) == f"Machine {M1} was not cordoned"

    run()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cordon", "ee"), "machine ee: machine does not exist"),
        (("cordon", "dd0"), "found more than one machine"),
        (("cordon", "dd01", "--reason", "a\nb"), "one line"),
        (("drain", "dd01", "--max-parallel", "0"), "--max-parallel"),
        (("drain", "dd01", "--min-healthy-time", "soon"), "--min-healthy-time"),
        (("drain", "dd01", "--timeout", "0"), "--timeout must be positive"),
        (("drain",), "drain needs a MACHINE"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    etcd: EtcdProcess, etcd_prefix: str, args: tuple[str, ...], message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=30)
            await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=30)
            before = await dump(api.registry)
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                done = await run_async(*flags, *args)
                assert done.code != 0, driver
                assert message in one_line(done.err), driver
                assert await dump(api.registry) == before, driver

    run()


def test_ctrl_c_pauses_the_drain_and_drain_again_resumes_it(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=30)
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                # No engine runs: the drain never finishes, so fleetctl waits until Ctrl-C.
                proc = await asyncio.create_subprocess_exec(
                    *command(*flags, "drain", "dd01"),
                    env=env(),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )

                async def asked() -> bool:
                    return (await api.registry.get_maintenance(M1))[1] is not None

                await eventually(asked, what="the drain request")
                await asyncio.sleep(0.3)  # let fleetctl reach its wait for progress
                proc.send_signal(signal.SIGINT)
                async with asyncio.timeout(20):
                    _, err = await proc.communicate()
                assert proc.returncode == 130, (driver, err)
                line = one_line(err.decode())
                assert line.startswith(f"Drain of {M1} paused; run 'fleetctl drain"), driver
                _, request, _ = await api.registry.get_maintenance(M1)
                assert request is not None
                assert request.paused, driver
                resumed = await run_async(*flags, "drain", "dd01", "--no-block")
                assert resumed.code == 0, resumed.err
                _, again, _ = await api.registry.get_maintenance(M1)
                assert again is not None
                assert not again.paused
                assert again.started == request.started  # resumed, not started over
                assert (await run_async(*flags, "uncordon", "dd01")).code == 0

    run()
