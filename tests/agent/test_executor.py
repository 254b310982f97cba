"""The action executor on the in-memory systemd: which systemd calls each action
makes and in what order, what a failed action leaves behind, and adoption (B8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.agent.executor import MAX_BACKOFF, ActionExecutor
from fleet.agent.unitdir import UnitDirectory
from fleet.cluster.etcd import EtcdProcess
from fleet.core.agent_plan import ActionKind, AgentAction, AgentReason, DesiredUnit
from fleet.core.model import DesiredState
from fleet.errors import SystemdError
from fleet.ports import NO_SUCH_UNIT, SystemClock
from tests.agent.support import holds, running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd

LAUNCHED = DesiredState.LAUNCHED
LOADED = DesiredState.LOADED


@async_test
async def test_load_start_stop_unload_in_fleets_order(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "ex-flow.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        file = w.units_dir / name
        async with running(w.agent()):
            await w.schedule(name, hash, LAUNCHED)
            await eventually(w.unit_is(name, "active"))
            assert w.mutations() == [
                ("link_unit_files", str(file)),
                ("reload", ""),
                ("start_unit", name),
            ]
            assert file.read_text() == body

            mark = len(w.systemd.calls)
            await w.schedule(name, hash, LOADED)
            await eventually(w.unit_is(name, "inactive"))
            assert w.mutations(mark) == [("stop_unit", name)]
            assert file.exists()

            mark = len(w.systemd.calls)
            await w.schedule(name, None)
            await eventually(holds(lambda: not file.exists()))
            await eventually(holds(lambda: ("reload", "") in w.mutations(mark)))
            # Unload only after the stop job ended; one reload, after the unload.
            assert w.mutations(mark) == [
                ("stop_unit", name),
                ("disable_unit_files", name),
                ("reset_failed_unit", name),
                ("reload", ""),
            ]
            assert [c for c in w.systemd.calls[mark:] if c[0] == "wait_job"] != []
            assert (await w.systemd.unit_states([name]))[name][0] == "not-found"


@async_test
async def test_a_changed_body_is_unloaded_then_loaded_and_started(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "ex-changed.service"
    body, hash = unit()
    new_body, new_hash = unit("/usr/bin/sleep 4000")
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        async with running(w.agent()):
            await w.schedule(name, hash, LAUNCHED)
            await eventually(w.unit_is(name, "active"))
            mark = len(w.systemd.calls)
            await w.registry.replace_unit(name, new_body, new_hash, LAUNCHED, False)
            await w.schedule(name, new_hash, LAUNCHED)
            await eventually(holds(lambda: w.systemd.started(name) == 2))
            assert w.mutations(mark) == [
                ("stop_unit", name),
                ("disable_unit_files", name),
                ("reset_failed_unit", name),
                ("link_unit_files", str(w.units_dir / name)),
                ("reload", ""),
                ("start_unit", name),
            ]
            assert (w.units_dir / name).read_text() == new_body


@async_test
async def test_an_install_section_is_enabled_after_linking(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name, sidekick = "ex-main.service", "ex-sidekick.service"
    body, hash = unit()
    side_body, side_hash = unit(extra=f"\n[Install]\nWantedBy={name}\n")
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        await w.create(sidekick, side_body, side_hash, desired=LOADED)
        async with running(w.agent()):
            await w.schedule(sidekick, side_hash, LOADED)
            await w.schedule(name, hash, LAUNCHED)
            # Loaded only, the sidekick starts with the unit that wants it.
            await eventually(w.unit_is(sidekick, "active"))
            side_path = str(w.units_dir / sidekick)
            calls = w.mutations()
            assert calls.index(("link_unit_files", side_path)) + 1 == calls.index(
                ("enable_unit_files", side_path)
            )
            assert ("enable_unit_files", str(w.units_dir / name)) not in calls
            assert w.systemd.started(sidekick) == 0
            assert await w.systemd.unit_file_state(sidekick) == "enabled-runtime"


EXPECTED_CALLS = {
    ActionKind.LOAD: [("link_unit_files", "{path}")],
    ActionKind.RELOAD: [("reload", "")],
    ActionKind.START: [("start_unit", "{name}")],
    ActionKind.STOP: [("stop_unit", "{name}")],
    ActionKind.UNLOAD: [
        ("stop_unit", "{name}"),
        ("disable_unit_files", "{name}"),
        ("reset_failed_unit", "{name}"),
    ],
}


def test_the_table_covers_every_action_kind() -> None:
    assert set(EXPECTED_CALLS) == set(ActionKind)


@pytest.mark.parametrize("kind", list(ActionKind), ids=lambda k: k.name)
@async_test
async def test_each_action_kind_makes_its_systemd_calls(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path, kind: ActionKind
) -> None:
    name = "ex-kind.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        units = UnitDirectory(w.units_dir)
        units.ensure()
        errors: list[str] = []
        executor = ActionExecutor(
            w.registry,
            w.systemd,
            units,
            systemd_units_dir=w.units_dir,
            job_timeout=1.0,
            clock=SystemClock(),
            retry_interval=0.05,
            on_error=errors.append,
        )
        desired = {name: DesiredUnit(hash, LAUNCHED)}
        if kind is not ActionKind.LOAD:
            setup = [
                AgentAction(ActionKind.LOAD, name, AgentReason.NOT_LOADED),
                AgentAction(ActionKind.RELOAD, "", AgentReason.UNIT_FILES_CHANGED),
            ]
            assert await executor.execute_plan(setup, desired)
        mark = len(w.systemd.calls)
        action = AgentAction(kind, "" if kind is ActionKind.RELOAD else name, AgentReason.PURGE)
        assert await executor.execute_plan([action], desired), errors
        path = str(w.units_dir / name)
        expected = [(op, arg.format(path=path, name=name)) for op, arg in EXPECTED_CALLS[kind]]
        assert w.mutations(mark) == expected
        assert (name in executor.current) is (kind is not ActionKind.UNLOAD)


@async_test
async def test_a_failed_action_holds_back_only_its_unit_which_is_retried(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    first, second = "ex-a.service", "ex-b.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        for name in (first, second):
            await w.create(name, body, hash)
            await w.schedule(name, hash, LAUNCHED)
        w.systemd.fail("link_unit_files", times=1)
        agent = w.agent()
        async with running(agent):
            await eventually(w.unit_is(first, "active"))
            await eventually(w.unit_is(second, "active"))
            links = [arg for op, arg in w.mutations() if op == "link_unit_files"]
            # The second unit did not wait for the first: the same pass linked it.
            assert links == [str(w.units_dir / n) for n in (first, second, first)]
            assert agent.last_error is not None
            assert f"type=LOAD unit={first}" in agent.last_error
            assert w.systemd.started(first) == w.systemd.started(second) == 1
            assert agent.executor.troubles == {}


@async_test
async def test_a_poisoned_unit_leaves_the_others_controllable(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    """A name that cannot be a file (written straight into etcd, past validation)
    is reported with why and retried with growing pauses; the other units on the
    machine still load, start, stop and unload."""
    poisoned, good = "..service", "ex-good.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(poisoned, body, hash)
        await w.create(good, body, hash)
        agent = w.agent()
        async with running(agent):
            await w.schedule(poisoned, hash, LAUNCHED)
            await w.schedule(good, hash, LAUNCHED)
            await eventually(w.unit_is(good, "active"))
            state = await eventually(lambda: w.state_of(poisoned))
            assert state is not None
            assert (state.fleet_state, state.active_state) == (DesiredState.INACTIVE, "inactive")
            assert state.error.startswith("load failed: ")
            assert "cannot be a file in the units directory" in state.error
            await eventually(holds(lambda: agent.executor.troubles[poisoned].failures >= 3))
            await w.schedule(good, hash, LOADED)
            await eventually(w.unit_is(good, "inactive"))
            await w.schedule(good, None)
            await eventually(holds(lambda: good not in agent.current))
            # Gone from the schedule: the poisoned unit's trouble and state go too.
            await w.schedule(poisoned, None)
            await eventually(w.published(poisoned, lambda s: s is None))
            assert poisoned not in agent.executor.troubles


class ManualClock(SystemClock):
    """Monotonic time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@async_test
async def test_a_failing_unit_is_retried_after_doubling_pauses(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    poisoned = "..service"
    _body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        clock = ManualClock()
        executor = ActionExecutor(
            w.registry,
            w.systemd,
            UnitDirectory(w.units_dir),
            systemd_units_dir=w.units_dir,
            job_timeout=1.0,
            clock=clock,
            retry_interval=1.0,
            on_error=lambda _error: None,
        )
        load = [AgentAction(ActionKind.LOAD, poisoned, AgentReason.NOT_LOADED)]
        desired = {poisoned: DesiredUnit(hash, LAUNCHED)}
        seen = []
        for step in (0.0, 0.5, 0.6, 1.0, 2.5, 3.0, 7.0, 200.0, 300.0, 400.0):
            clock.now = 100.0 + step
            assert not await executor.execute_plan(load, desired)
            trouble = executor.troubles[poisoned]
            seen.append((trouble.failures, trouble.retry_at - 100.0))
        # Tried at 0, 1, 3, 7 (pauses 1, 2, 4, 8, ...), the pause capped at MAX_BACKOFF.
        assert seen == [
            (1, 1.0), (1, 1.0), (1, 1.0), (2, 3.0), (2, 3.0), (3, 7.0), (4, 15.0),
            (5, 200.0 + 16.0), (6, 300.0 + 32.0), (7, 400.0 + MAX_BACKOFF),
        ]  # fmt: skip
        assert executor.next_retry_in() == MAX_BACKOFF == 60.0


@async_test
async def test_a_failed_stop_keeps_the_unit_until_a_stop_succeeds(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    """fleet issue #1216: a unit whose stop failed is not unloaded behind systemd's back."""
    name = "ex-stubborn.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        agent = w.agent()
        async with running(agent):
            await w.schedule(name, hash, LAUNCHED)
            await eventually(w.unit_is(name, "active"))
            w.systemd.fail("stop_unit", times=None)
            await w.schedule(name, None)
            await eventually(holds(lambda: w.mutations().count(("stop_unit", name)) >= 3))
            assert (w.units_dir / name).exists()
            assert name in agent.current
            assert ("disable_unit_files", name) not in w.mutations()
            w.systemd.clear_failures()
            await eventually(holds(lambda: not (w.units_dir / name).exists()))
            assert name not in agent.current


@async_test
async def test_a_unit_systemd_does_not_know_is_unloaded_without_a_stop(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "ex-forgotten.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        agent = w.agent()
        async with running(agent):
            await w.schedule(name, hash, LOADED)
            await eventually(holds(lambda: name in agent.current))
            forgotten = SystemdError(
                f"StopUnit: {NO_SUCH_UNIT}: Unit {name} not loaded.", NO_SUCH_UNIT
            )
            w.systemd.fail("stop_unit", forgotten)
            await w.schedule(name, None)
            await eventually(holds(lambda: not (w.units_dir / name).exists()))
            assert name not in agent.current


@async_test
async def test_a_failing_unit_is_started_once_and_stays_failed(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    """A poisoned unit (its process exits 1) is not restarted by every pass."""
    name = "ex-poisoned.service"
    body, hash = unit("/bin/false")
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        agent = w.agent(resync_interval=0.05)
        async with running(agent):
            await w.schedule(name, hash, LAUNCHED)
            await eventually(
                w.published(name, lambda s: s is not None and s.active_state == "failed")
            )
            passes = agent.passes
            await eventually(holds(lambda: agent.passes >= passes + 3))
            assert w.systemd.started(name) == 1
            assert agent.current[name].state is LAUNCHED


@async_test
async def test_a_restarted_agent_adopts_running_units_without_restarting_them(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    """B8, with the presence resumed from the lease file at once."""
    name = "ex-adopt.service"
    body, hash = unit()
    lease_file = tmp_path / "agent.lease"
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        await w.schedule(name, hash, LAUNCHED)
        first = w.agent(store=await w.own_registry(), lease_file=lease_file)
        async with running(first):
            await eventually(w.unit_is(name, "active"))
            assert first.lease is not None
            lease_id = first.lease.lease_id
        await w.extra_registries[0].close()  # the first fleetd's process exits
        mark = len(w.systemd.calls)

        second = w.agent(lease_file=lease_file)
        async with running(second):
            assert second.lease is not None
            assert second.lease.lease_id == lease_id
            await eventually(holds(lambda: second.passes >= 1))
            assert second.current[name].state is LAUNCHED
            assert w.mutations(mark) == []  # no reload, no stop, no start
            assert await w.active(name) == "active"


@async_test
async def test_an_adopted_file_systemd_does_not_know_is_loaded_again(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "ex-unlinked.service"
    body, hash = unit()
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        await w.schedule(name, hash, LAUNCHED)
        units = UnitDirectory(w.units_dir)
        units.ensure()
        units.write(name, body)  # left by a previous agent, but never linked
        async with running(w.agent()):
            await eventually(w.unit_is(name, "active"))
            assert ("link_unit_files", str(w.units_dir / name)) in w.mutations()
