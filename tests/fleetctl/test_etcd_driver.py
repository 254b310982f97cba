"""fleetctl --driver=etcd end to end: a subprocess against a real etcd.

These mirror the registry-level parts of fleet's functional tests
(TestUnitSubmit, TestUnitCat, TestListUnitFilesOrder, TestUnitSubmitReplace,
TestFleetctlWithEnv). Where a command waits for the engine or an agent, the
test plays that part itself through EtcdRegistry ("simulated machine").
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypedDict, TypeVar, Unpack

import pytest

from fleet.cluster.etcd import EtcdProcess, free_port
from fleet.core.model import DesiredState, Machine, PlacementReason, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import Leadership, MachineLease, ScheduleChange
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import eventually
from tests.fleetctl.support import UNITS, Result, etcd_flags, one_line, run, run_async

pytestmark = pytest.mark.etcd

HELLO = UnitFile.parse((UNITS / "hello.service").read_text())
MACHINE_ID = "113f16a7f33e4e2ca5d1d0a0f1bd38bb"
T = TypeVar("T")


class Fleetctl:
    def __init__(self, endpoint: str, prefix: str) -> None:
        self.endpoint = endpoint
        self.prefix = prefix
        self.flags = etcd_flags(endpoint, prefix)

    def __call__(self, *args: str, cwd: Path = UNITS) -> Result:
        return run(*self.flags, *args, cwd=cwd)

    async def run_async(self, *args: str) -> Result:
        return await run_async(*self.flags, *args)

    def unit_files(self) -> list[str]:
        result = self("list-unit-files", "--no-legend", "--fields=unit")
        assert result.code == 0, result.err
        return result.out.splitlines()

    def registry(self, body: Callable[[EtcdRegistry], Awaitable[T]]) -> T:
        async def go() -> T:
            async with await EtcdRegistry.connect(
                [self.endpoint], self.prefix, request_timeout=2.0
            ) as registry:
                return await body(registry)

        return asyncio.run(go())


@pytest.fixture
def fleetctl(etcd: EtcdProcess, etcd_prefix: str) -> Fleetctl:
    return Fleetctl(etcd.endpoint, etcd_prefix)


def test_unit_submit_template_instances(fleetctl: Fleetctl, tmp_path: Path) -> None:
    shutil.copy(UNITS / "hello@.service", tmp_path)
    instances = [f"hello@{i}.service" for i in range(1, 10)]
    paths = [str(tmp_path / name) for name in instances]

    submitted = fleetctl("submit", *paths, cwd=Path("/"))
    assert submitted.code == 0, submitted.err
    assert submitted.out.splitlines() == [f"Unit {name} inactive" for name in instances]
    assert fleetctl.unit_files() == instances

    destroyed = fleetctl("destroy", *instances)
    assert destroyed.code == 0, destroyed.err
    assert destroyed.out.splitlines() == [f"Destroyed {name}" for name in instances]
    assert fleetctl.unit_files() == []

    again = fleetctl("submit", *paths)
    assert again.code == 0, again.err
    assert fleetctl.unit_files() == instances


def test_instance_from_registry_template(fleetctl: Fleetctl, tmp_path: Path) -> None:
    assert fleetctl("submit", "hello@.service").code == 0
    # No file on disk next to the argument: the registry's template is used.
    result = fleetctl("submit", "hello@web.service", cwd=tmp_path)
    assert result.code == 0, result.err
    cat = fleetctl("cat", "hello@web.service")
    assert cat.out == UnitFile.parse((UNITS / "hello@.service").read_text()).serialize()


def test_unit_cat_is_the_canonical_unit(fleetctl: Fleetctl) -> None:
    assert fleetctl("submit", "hello.service").code == 0
    result = fleetctl("cat", "hello")
    assert result.code == 0
    assert result.out.strip() == (UNITS / "hello.service").read_text().strip()
    missing = fleetctl("cat", "nothere.service")
    assert (missing.code, missing.err) == (1, "Unit nothere.service not found\n")


def test_list_unit_files_order(fleetctl: Fleetctl, tmp_path: Path) -> None:
    shutil.copy(UNITS / "hello@.service", tmp_path)
    names = [f"hello@{i:02d}.service" for i in range(20, 0, -1)]
    assert fleetctl("submit", *names, cwd=tmp_path).code == 0
    assert fleetctl.unit_files() == sorted(names)


def test_list_unit_files_exact_lines(fleetctl: Fleetctl) -> None:
    assert fleetctl("submit", "hello.service", "global.service").code == 0
    result = fleetctl("list-unit-files")
    assert result.code == 0
    glob = UnitFile.parse((UNITS / "global.service").read_text())
    assert result.out == (
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"
        f"global.service\t{glob.hash[:7]}\tinactive\t-\t\tglobal\n"
        f"hello.service\t{HELLO.hash[:7]}\tinactive\tinactive\t-\n"
    )
    full = fleetctl("list-unit-files", "--full", "--no-legend", "--fields=unit,hash,global,desc")
    assert full.out == (
        f"global.service\t{glob.hash}\ttrue\tA global unit\n"
        f"hello.service\t{HELLO.hash}\tfalse\tHello World\n"
    )


def test_list_json_output(fleetctl: Fleetctl) -> None:
    assert fleetctl("submit", "hello.service").code == 0
    files = json.loads(fleetctl("list-unit-files", "-o", "json").out)
    assert [(u["unit"], u["hash"], u["desired_state"], u["reason"]) for u in files] == [
        ("hello.service", HELLO.hash, "inactive", None)
    ]
    assert json.loads(fleetctl("list-units", "--output=json").out) == []
    assert json.loads(fleetctl("list-machines", "-o", "json").out) == []


def test_unit_submit_replace(fleetctl: Fleetctl, tmp_path: Path) -> None:
    unit = tmp_path / "hello.service"
    shutil.copy(UNITS / "hello.service", unit)
    assert fleetctl("submit", str(unit)).code == 0
    shutil.copy(UNITS / "hello-changed.service", unit)

    kept = fleetctl("submit", str(unit))
    assert kept.code == 0
    assert "differs from local unit file" in kept.err
    assert "Hello World, changed" not in fleetctl("cat", "hello.service").out

    replaced = fleetctl("submit", "--replace", str(unit))
    assert replaced.code == 0, replaced.err
    assert "Description=Hello World, changed" in fleetctl("cat", "hello.service").out

    same = fleetctl("submit", "--replace", str(unit))
    assert same.out == "Found same Unit(hello.service) in Registry, nothing to do\n"


def test_replace_refused_for_launched_unit_on_submit(fleetctl: Fleetctl, tmp_path: Path) -> None:
    unit = tmp_path / "hello.service"
    shutil.copy(UNITS / "hello.service", unit)
    assert fleetctl("start", "--no-block", str(unit)).code == 0
    shutil.copy(UNITS / "hello-changed.service", unit)
    result = fleetctl("submit", "--replace", str(unit))
    assert result.code == 0
    assert result.err == (
        "Warning: can not replace Unit(hello.service) in state 'launched', "
        "use the appropriate command\n"
    )
    assert "changed" not in fleetctl("cat", "hello.service").out


@pytest.mark.parametrize(
    "env_driver", [pytest.param("etcd", id="lower"), pytest.param("ETCD", id="upper")]
)
def test_fleetctl_with_env(etcd: EtcdProcess, etcd_prefix: str, env_driver: str) -> None:
    env = {
        "FLEETCTL_ENDPOINT": etcd.endpoint,
        "FLEETCTL_DRIVER": env_driver,
        "FLEETCTL_ETCD_KEY_PREFIX": etcd_prefix,
    }
    submitted = run("submit", "hello.service", extra_env=env)
    assert submitted.code == 0, submitted.err
    listed = run("list-unit-files", "--no-legend", "--fields=unit", extra_env=env)
    assert listed.out == "hello.service\n"


BAD_INPUT = [
    pytest.param(("submit", "broken.service"), "unable to parse unit file", id="broken-unit-file"),
    pytest.param(("submit", "../x.service"), "unable to find unit file", id="dot-dot-path"),
    pytest.param(("submit", "a/b.service"), "unable to find unit file", id="missing-dir"),
    pytest.param(("submit", "a" * 300 + ".service"), "longer than 255", id="300-char-name"),
    pytest.param(("submit", "bad name.service"), "not allowed", id="space-in-name"),
    pytest.param(("start", "hello@.service"), "cannot activate template", id="start-template"),
    pytest.param(("list-unit-files", "--fields=unit,x"), "Invalid key", id="unknown-field"),
    pytest.param(("list-units", "--fields="), "Must define output format", id="empty-fields"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_INPUT)
def test_bad_input_writes_nothing(fleetctl: Fleetctl, args: tuple[str, ...], needle: str) -> None:
    # hello.service is valid: the batch must fail as a whole before any write.
    extra = ("hello.service",) if args[0] in ("submit", "start") else ()
    result = fleetctl(*args[:1], *extra, *args[1:])
    assert result.code == 1
    assert needle in one_line(result.err)
    assert result.out == ""
    assert fleetctl.unit_files() == []


def test_unknown_flag_is_a_usage_error(fleetctl: Fleetctl) -> None:
    result = fleetctl("submit", "--bogus", "hello.service")
    assert result.code == 2
    assert fleetctl.unit_files() == []


def test_unreachable_etcd_fails_fast() -> None:
    closed = free_port()
    started = time.monotonic()
    result = run(
        "--driver=etcd",
        f"--endpoint=http://127.0.0.1:{closed}",
        "--request-timeout=1",
        "list-unit-files",
    )
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert f"127.0.0.1:{closed}" in one_line(result.err)
    assert elapsed < 1.0 + 2.0  # the request timeout plus interpreter start-up


def test_warnings_for_unknown_xfleet_keys(fleetctl: Fleetctl) -> None:
    result = fleetctl("submit", "unknown-xfleet.service")
    assert result.code == 0
    assert result.err.startswith("WARNING: Unit unknown-xfleet.service: unrecognized requirement")


def test_stop_unload_destroy_without_engine(fleetctl: Fleetctl) -> None:
    assert fleetctl("submit", "hello.service", "global.service").code == 0
    stop = fleetctl("stop", "hello.service")
    assert (stop.code, stop.err) == (1, "Unable to stop unit hello.service in state inactive\n")
    missing = fleetctl("stop", "nothere.service")
    assert (missing.code, missing.err) == (0, "Units not found in registry\n")
    started = fleetctl("start", "--no-block", "hello.service", "global.service")
    assert started.out.splitlines() == [
        "Triggered global unit global.service start",
        "Triggered unit hello.service start",
    ]
    unload = fleetctl("unload", "hello.service", "global.service")
    assert unload.code == 0, unload.err
    assert unload.out.splitlines() == [
        "Triggered global unit global.service unload",
        "Unit hello.service inactive",
    ]
    assert unload.err == "Successfully unloaded units [hello.service].\n"
    listed = fleetctl("list-unit-files", "--no-legend", "--fields=unit,dstate")
    assert listed.out.splitlines() == ["global.service\tinactive", "hello.service\tinactive"]


def test_start_times_out_without_engine(fleetctl: Fleetctl) -> None:
    started = time.monotonic()
    result = fleetctl("start", "--block-attempts=1", "hello.service")
    assert time.monotonic() - started >= 2.0
    assert result.code == 1
    assert result.err == (
        "timed out waiting for unit hello.service to report state launched "
        "(last seen: inactive, not scheduled)\n"
    )


# --- simulated machine: the test plays engine and agent -------------------------------------


async def wait_for_desired(registry: EtcdRegistry, name: str, desired: DesiredState) -> None:
    async def current() -> DesiredState | None:
        job = await registry.get_job(name)
        return None if job is None else job.desired_state

    await eventually(
        current,
        lambda state: state is desired,
        # Generous: a loaded CI machine can take seconds to start the fleetctl subprocess.
        timeout=30,
        interval=0.05,
        what=f"fleetctl setting {name} to {desired}",
    )


class Reported(TypedDict, total=False):
    """What a simulated agent reports about a unit (defaults: loaded, inactive, dead)."""

    load: str
    active: str
    sub: str
    result: str
    start: str
    error: str


class SimulatedMachine:
    """Plays the engine (schedule writes) and one agent (state reports)."""

    def __init__(self, registry: EtcdRegistry) -> None:
        self.registry = registry
        self.lease: MachineLease | None = None
        self.leadership: Leadership | None = None

    async def place(
        self,
        name: str,
        desired: DesiredState,
        *,
        fleet_state: DesiredState | None = None,
        **state: Unpack[Reported],
    ) -> None:
        if self.lease is None:
            machine = Machine(MACHINE_ID, "172.17.8.103")
            self.lease = await self.registry.register_machine(machine, ttl=10)
            self.leadership = await self.registry.campaign(MACHINE_ID, "0.1.0", ttl=10)
        assert self.leadership is not None
        change = ScheduleChange(name, MACHINE_ID, HELLO.hash, desired)
        await self.registry.apply_schedule(self.leadership, [change], {})
        await self.registry.publish_unit_state(
            self.lease,
            UnitState(
                name,
                MACHINE_ID,
                state.get("load", "loaded"),
                state.get("active", "inactive"),
                state.get("sub", "dead"),
                HELLO.hash,
                desired if fleet_state is None else fleet_state,
                result=state.get("result", ""),
                start_result=state.get("start", ""),
                error=state.get("error", ""),
            ),
        )


def test_load_simulated_machine(fleetctl: Fleetctl) -> None:
    async def scenario(registry: EtcdRegistry) -> Result:
        command = asyncio.create_task(fleetctl.run_async("load", "hello.service"))
        await wait_for_desired(registry, "hello.service", DesiredState.LOADED)
        await SimulatedMachine(registry).place("hello.service", DesiredState.LOADED)
        return await command

    result = fleetctl.registry(scenario)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "Unit hello.service inactive",
        "Unit hello.service loaded on 113f16a7.../172.17.8.103",
    ]


def test_start_simulated_machine_waits_for_systemd_active(fleetctl: Fleetctl) -> None:
    async def scenario(registry: EtcdRegistry) -> tuple[Result, list[str]]:
        command = asyncio.create_task(fleetctl.run_async("start", "hello.service"))
        await wait_for_desired(registry, "hello.service", DesiredState.LAUNCHED)
        machine = SimulatedMachine(registry)
        await machine.place("hello.service", DesiredState.LAUNCHED, active="activating")
        await asyncio.sleep(0.6)  # sampling: fleetctl must still be waiting for "active"
        assert not command.done()
        await machine.place("hello.service", DesiredState.LAUNCHED, active="active", sub="running")
        result = await command
        units = fleetctl("list-units")
        return result, units.out.splitlines()

    result, units = fleetctl.registry(scenario)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "Unit hello.service launched on 113f16a7.../172.17.8.103"
    assert units == [
        "UNIT\t\tMACHINE\t\t\t\tACTIVE\tSUB",
        "hello.service\t113f16a7.../172.17.8.103\tactive\trunning",
    ]


def test_start_unplaceable_simulated_machine_exits_2_with_reason(fleetctl: Fleetctl) -> None:
    reason = 'no machine matches MachineMetadata "region=mars"'

    async def scenario(registry: EtcdRegistry) -> Result:
        command = asyncio.create_task(fleetctl.run_async("start", "hello.service"))
        await wait_for_desired(registry, "hello.service", DesiredState.LAUNCHED)
        leadership = await registry.campaign("engine", "0.1.0", ttl=10)
        assert leadership is not None
        await registry.apply_schedule(leadership, [], {"hello.service": PlacementReason(reason)})
        return await command

    result = fleetctl.registry(scenario)
    assert result.code == 2
    assert one_line(result.err) == f"Unit hello.service cannot be placed: {reason}"
    listed = fleetctl("list-unit-files", "--no-legend", "--fields=unit,reason")
    assert listed.out == f"hello.service\t{reason}\n"


def test_destroy_waits_until_the_agent_dropped_the_unit(fleetctl: Fleetctl) -> None:
    async def scenario(registry: EtcdRegistry) -> Result:
        assert (await fleetctl.run_async("submit", "hello.service")).code == 0
        await SimulatedMachine(registry).place(
            "hello.service", DesiredState.LAUNCHED, active="active"
        )
        command = asyncio.create_task(fleetctl.run_async("destroy", "hello.service"))
        await asyncio.sleep(0.6)  # sampling: fleetctl must still be waiting
        assert not command.done()  # the agent still reports the unit
        await registry.delete_unit_state("hello.service", MACHINE_ID)
        return await command

    result = fleetctl.registry(scenario)
    assert (result.code, result.out) == (0, "Destroyed hello.service\n")


@pytest.mark.parametrize(
    ("fleetd_version", "warned"),
    [
        pytest.param("99.0.0", True, id="newer-fleetd-warns"),
        pytest.param("0.0.1", False, id="older-fleetd-silent"),
    ],
)
def test_version_skew_warning_simulated_machine(
    fleetctl: Fleetctl, fleetd_version: str, warned: bool
) -> None:
    """fleet's etcd-driver check: a registered fleetd newer than fleetctl is announced."""

    async def scenario(registry: EtcdRegistry) -> Result:
        machine = Machine(MACHINE_ID, "172.17.8.103", version=fleetd_version)
        await registry.register_machine(machine, ttl=10)
        return await fleetctl.run_async("list-machines", "--no-legend")

    result = fleetctl.registry(scenario)
    assert result.code == 0, result.err
    assert ("is older than the latest registered version of fleet" in result.err) is warned
    assert (f"({fleetd_version})" in result.err) is warned


def test_plan_simulated_machine_writes_nothing(fleetctl: Fleetctl) -> None:
    """B14: `plan` answers with the engine's scheduler and writes nothing; an
    unplaceable unit makes it exit 2 with the reason."""

    async def scenario(registry: EtcdRegistry) -> tuple[Result, Result]:
        await registry.register_machine(Machine(MACHINE_ID, "172.17.8.103"), ttl=10)
        fits = await fleetctl.run_async("plan", "hello.service")
        stuck = await fleetctl.run_async("plan", "hello.service", "unplaceable.service")
        return fits, stuck

    fits, stuck = fleetctl.registry(scenario)
    assert fits.code == 0, fits.err
    assert fits.out.splitlines()[1].startswith("hello.service\t113f16a7.../172.17.8.103\t")
    assert stuck.code == 2
    row = stuck.out.splitlines()[2]
    assert row.startswith("unplaceable.service\t-\t")
    assert "MachineMetadata" in row
    assert fleetctl.unit_files() == []


WHERE = "113f16a7.../172.17.8.103"
SEE = "(see fleetctl status hello.service; fleetctl journal hello.service)"


@pytest.mark.parametrize(
    ("state", "code", "out", "err"),
    [
        pytest.param(
            {"active": "failed", "sub": "failed", "result": "exit-code", "start": "done"},
            1,
            f"Unit hello.service launched on {WHERE}",
            f"Unit hello.service failed on {WHERE}: Result=exit-code {SEE}",
            id="failed",
        ),
        pytest.param(
            {"active": "activating", "sub": "auto-restart", "result": "exit-code", "start": "done"},
            1,
            f"Unit hello.service launched on {WHERE}",
            f"Unit hello.service failed on {WHERE}: Result=exit-code, systemd keeps restarting "
            f"it {SEE}",
            id="crash-loop",
        ),
        pytest.param(
            {"active": "inactive", "sub": "dead", "result": "success", "start": "done"},
            0,
            f"Unit hello.service ran and exited successfully on {WHERE}",
            "",
            id="ran-and-exited",
        ),
    ],
)
def test_start_ends_on_systemds_verdict(
    fleetctl: Fleetctl, state: Reported, code: int, out: str, err: str
) -> None:
    """``start`` never hangs on a unit that failed or simply ran: it says what happened."""

    async def scenario(registry: EtcdRegistry) -> Result:
        command = asyncio.create_task(fleetctl.run_async("start", "hello.service"))
        await wait_for_desired(registry, "hello.service", DesiredState.LAUNCHED)
        machine = SimulatedMachine(registry)
        # The agent's start job has not finished: an old "failed" means nothing yet.
        await machine.place(
            "hello.service", DesiredState.LAUNCHED, active="failed", sub="failed", start="queued"
        )
        await asyncio.sleep(0.6)  # sampling: fleetctl must still be waiting
        assert not command.done()
        await machine.place("hello.service", DesiredState.LAUNCHED, **state)
        return await command

    result = fleetctl.registry(scenario)
    assert result.code == code, result.err
    assert result.out.splitlines()[-1] == out
    assert result.err == (err + "\n" if err else "")


def test_start_of_a_unit_its_agent_cannot_load_fails_at_once(fleetctl: Fleetctl) -> None:
    async def scenario(registry: EtcdRegistry) -> Result:
        command = asyncio.create_task(fleetctl.run_async("start", "hello.service"))
        await wait_for_desired(registry, "hello.service", DesiredState.LAUNCHED)
        await SimulatedMachine(registry).place(
            "hello.service",
            DesiredState.LAUNCHED,
            fleet_state=DesiredState.INACTIVE,
            error="load failed: no space left on device",
        )
        return await command

    result = fleetctl.registry(scenario)
    assert result.code == 1
    assert result.err == (
        "Unit hello.service failed on 113f16a7: load failed: no space left on device\n"
    )
    listed = fleetctl("list-unit-files", "--no-legend", "--fields=unit,reason")
    assert listed.out == (
        "hello.service\tfailed on 113f16a7: load failed: no space left on device\n"
    )


def test_destroy_of_an_unknown_unit_says_so_like_fleet(fleetctl: Fleetctl) -> None:
    result = fleetctl("destroy", "nothere.service")
    assert (result.code, result.out, result.err) == (0, "", "Units not found in registry\n")


def test_start_no_block_of_a_new_unit_prints_its_creation_like_fleet(fleetctl: Fleetctl) -> None:
    result = fleetctl("start", "--no-block", "hello.service", "global.service")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "Unit hello.service inactive",
        "Triggered global unit global.service start",
        "Triggered unit hello.service start",
    ]


def test_stop_of_a_global_unit_only_triggers_it(fleetctl: Fleetctl) -> None:
    assert fleetctl("start", "--no-block", "global.service").code == 0
    result = fleetctl("stop", "global.service")
    assert (result.code, result.out, result.err) == (
        0,
        "Triggered global unit global.service stop\n",
        "",
    )
