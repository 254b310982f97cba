"""One contract, two systemds: every test runs against the in-memory systemd
(:class:`fleet.systemd.memory.InMemorySystemd`) and against the D-Bus adapter
connected to a real systemd in an nspawn machine, asserting the same thing.

This is what entitles the agent's logic tests to run on the in-memory one
(docs/architecture.md: a fake must pass the same contract tests as the real
adapter). The real-systemd half boots one machine and needs root.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from fleet.agent.unitdir import UnitDirectory
from fleet.cluster import nodes
from fleet.errors import SystemdError, Timeout
from fleet.ports import NO_SUCH_UNIT, SystemdManager, UnitChange
from fleet.systemd.dbus import SystemdManager as DBusSystemdManager
from fleet.systemd.memory import InMemorySystemd
from tests.asyncsupport import async_test
from tests.systemd.support import NodeUnitDir, wait_for

SLEEPER = "[Service]\nExecStart=/usr/bin/sleep 3000\n"
FAILING_ONESHOT = "[Service]\nType=oneshot\nExecStart=/bin/false\n"
FAILING_SIMPLE = "[Service]\nExecStart=/bin/false\n"
JOB_TIMEOUT = 5.0


class ContractManager(SystemdManager, Protocol):
    """The port, plus the unit-file state both implementations can report."""

    async def unit_file_state(self, name: str) -> str: ...


@dataclass
class Backend:
    """A systemd and a unit directory it can link from: tests write to ``host``,
    the manager sees the same files under ``inside``."""

    manager: ContractManager
    host: Path
    inside: Path
    written: list[str] = field(default_factory=list)

    def write(self, name: str, body: str) -> str:
        """Write unit ``name``; the path to hand to the manager."""
        UnitDirectory(self.host).write(name, body)
        self.written.append(name)
        return str(self.inside / name)

    async def load(self, name: str, body: str) -> str:
        path = self.write(name, body)
        await self.manager.link_unit_files([path])
        await self.manager.reload()
        return path

    async def states(self, name: str) -> tuple[str, str, str]:
        return (await self.manager.unit_states([name]))[name]

    async def cleanup(self) -> None:
        """Leave a real machine as it was found for the next test."""
        for name in self.written:
            with contextlib.suppress(SystemdError, Timeout):
                await self.manager.wait_job(await self.manager.stop_unit(name), JOB_TIMEOUT)
            with contextlib.suppress(SystemdError):
                await self.manager.disable_unit_files([name])
            with contextlib.suppress(SystemdError):
                await self.manager.reset_failed_unit(name)
        await self.manager.reload()


OpenBackend = Callable[[], AbstractAsyncContextManager[Backend]]


@pytest.fixture(params=["memory", "dbus"])
def systemd(request: pytest.FixtureRequest, tmp_path: Path) -> OpenBackend:
    """Open the backend inside the test's event loop."""

    if request.param == "memory":

        @asynccontextmanager
        async def memory() -> AsyncIterator[Backend]:
            units = tmp_path / "units"
            units.mkdir()
            yield Backend(InMemorySystemd(), units, units)

        return memory

    node: nodes.Node = request.getfixturevalue("systemd_node")
    unit_dir: NodeUnitDir = request.getfixturevalue("unit_dir")

    @asynccontextmanager
    async def dbus() -> AsyncIterator[Backend]:
        async with await DBusSystemdManager().connect(node.bus) as manager:
            backend = Backend(manager, unit_dir.host, unit_dir.inside)
            try:
                yield backend
            finally:
                await backend.cleanup()

    return dbus


@async_test
async def test_link_and_reload_make_a_unit_loaded(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-link.service"
        assert await b.states(name) == ("not-found", "inactive", "dead")
        changes = await b.manager.link_unit_files([b.write(name, SLEEPER)])
        assert [kind for kind, _link, _dest in changes] == ["symlink"]
        await b.manager.reload()
        assert await b.states(name) == ("loaded", "inactive", "dead")
        assert await b.manager.unit_file_state(name) == "linked-runtime"


@async_test
async def test_start_makes_a_unit_active(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-start.service"
        await b.load(name, SLEEPER)
        job = await b.manager.start_unit(name)
        assert await b.manager.wait_job(job, JOB_TIMEOUT) == "done"
        assert await b.states(name) == ("loaded", "active", "running")
        # Starting what runs is a job that changes nothing.
        again = await b.manager.start_unit(name)
        assert again != job
        assert await b.manager.wait_job(again, JOB_TIMEOUT) == "done"
        assert await b.states(name) == ("loaded", "active", "running")


@async_test
async def test_a_failing_oneshot_fails_its_job(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-oneshot-fails.service"
        await b.load(name, FAILING_ONESHOT)
        job = await b.manager.start_unit(name)
        assert await b.manager.wait_job(job, JOB_TIMEOUT) == "failed"
        assert await b.states(name) == ("loaded", "failed", "failed")


@async_test
async def test_a_failing_simple_service_starts_then_fails(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-simple-fails.service"
        await b.load(name, FAILING_SIMPLE)
        job = await b.manager.start_unit(name)
        # Type=simple: the job is done once the process is forked; it then exits 1.
        assert await b.manager.wait_job(job, JOB_TIMEOUT) == "done"
        await wait_for(
            lambda: b.states(name),
            lambda s: s == ("loaded", "failed", "failed"),
            what="the unit failed",
        )


@async_test
async def test_stop_makes_a_unit_inactive(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-stop.service"
        await b.load(name, SLEEPER)
        await b.manager.wait_job(await b.manager.start_unit(name), JOB_TIMEOUT)
        job = await b.manager.stop_unit(name)
        assert await b.manager.wait_job(job, JOB_TIMEOUT) == "done"
        assert await b.states(name) == ("loaded", "inactive", "dead")


@async_test
async def test_stop_leaves_a_failed_unit_failed(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-stop-failed.service"
        await b.load(name, FAILING_ONESHOT)
        await b.manager.wait_job(await b.manager.start_unit(name), JOB_TIMEOUT)
        assert await b.manager.wait_job(await b.manager.stop_unit(name), JOB_TIMEOUT) == "done"
        assert await b.states(name) == ("loaded", "failed", "failed")


@async_test
async def test_reset_failed_clears_failed(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-reset.service"
        await b.load(name, FAILING_ONESHOT)
        await b.manager.wait_job(await b.manager.start_unit(name), JOB_TIMEOUT)
        assert (await b.states(name))[1] == "failed"
        await b.manager.reset_failed_unit(name)
        assert await b.states(name) == ("loaded", "inactive", "dead")


@async_test
async def test_unknown_units_and_jobs(systemd: OpenBackend) -> None:
    async with systemd() as b:
        with pytest.raises(SystemdError) as caught:
            await b.manager.stop_unit("ct-no-such-unit.service")
        assert caught.value.dbus_name == NO_SUCH_UNIT
        assert "ct-no-such-unit.service" in str(caught.value)
        with pytest.raises(SystemdError) as caught:
            await b.manager.start_unit("ct-no-such-unit.service")
        assert caught.value.dbus_name == NO_SUCH_UNIT
        with pytest.raises(Timeout):
            await b.manager.wait_job("/org/freedesktop/systemd1/job/999999999", 0.05)
        unknown = await b.manager.unit_states(["ct-unknown.service"])
        assert unknown == {"ct-unknown.service": ("not-found", "inactive", "dead")}


@async_test
async def test_subscribe_delivers_hints_for_a_started_unit(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-signals.service"
        queue = b.manager.subscribe()
        await b.load(name, SLEEPER)
        # Wait for the result only after the job has surely finished: the
        # JobRemoved signal was recorded before anyone asked for it.
        job = await b.manager.start_unit(name)
        await wait_for(lambda: b.states(name), lambda s: s[1] == "active")
        seen: list[UnitChange] = []

        async def drain() -> list[UnitChange]:
            while not queue.empty():
                seen.append(queue.get_nowait())
            return seen

        await wait_for(
            drain,
            lambda got: (
                any(c.unit == name and c.job_result == "done" for c in got)
                and any(c.unit == name and c.active == "active" for c in got)
            ),
            what="a job result and an active state for the unit",
        )
        assert await b.manager.wait_job(job, 0.5) == "done"
        await drain()
        b.manager.unsubscribe(queue)
        await b.manager.wait_job(await b.manager.stop_unit(name), JOB_TIMEOUT)
        assert queue.empty()  # an unsubscribed queue hears nothing more


@async_test
async def test_enable_applies_install_wanted_by(systemd: OpenBackend) -> None:
    async with systemd() as b:
        hello, sidekick = "ct-hello.service", "ct-sidekick.service"
        paths = [
            b.write(hello, SLEEPER),
            b.write(sidekick, SLEEPER + f"\n[Install]\nWantedBy={hello}\n"),
        ]
        await b.manager.link_unit_files(paths)
        changes = await b.manager.enable_unit_files([paths[1]])
        assert any(
            kind == "symlink" and link.endswith(f"{hello}.wants/{sidekick}")
            for kind, link, _dest in changes
        )
        await b.manager.reload()
        assert await b.manager.unit_file_state(sidekick) == "enabled-runtime"
        assert await b.manager.unit_file_state(hello) == "linked-runtime"
        assert (await b.states(sidekick))[1] == "inactive"
        await b.manager.wait_job(await b.manager.start_unit(hello), JOB_TIMEOUT)
        await wait_for(
            lambda: b.states(sidekick),
            lambda s: s[1] == "active",
            what="sidekick active after its WantedBy target started",
        )


@async_test
async def test_enable_without_install_changes_nothing(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-no-install.service"
        path = b.write(name, SLEEPER)
        await b.manager.link_unit_files([path])
        assert await b.manager.enable_unit_files([path]) == []
        assert await b.manager.unit_file_state(name) == "linked-runtime"


@async_test
async def test_disable_unlinks_and_reload_forgets(systemd: OpenBackend) -> None:
    async with systemd() as b:
        hello, sidekick = "ct-dis-hello.service", "ct-dis-sidekick.service"
        paths = [
            b.write(hello, SLEEPER),
            b.write(sidekick, SLEEPER + f"\n[Install]\nWantedBy={hello}\n"),
        ]
        await b.manager.link_unit_files(paths)
        await b.manager.enable_unit_files([paths[1]])
        await b.manager.reload()
        changes = await b.manager.disable_unit_files([sidekick])
        assert changes
        assert {kind for kind, _link, _dest in changes} == {"unlink"}
        assert any(link.endswith(f"{hello}.wants/{sidekick}") for _kind, link, _ in changes)
        await b.manager.reload()
        # Its file is outside systemd's search path: without the link it is gone.
        assert await b.states(sidekick) == ("not-found", "inactive", "dead")
        await b.manager.wait_job(await b.manager.start_unit(hello), JOB_TIMEOUT)
        assert (await b.states(hello))[1] == "active"
        assert (await b.states(sidekick))[1] == "inactive"


@async_test
async def test_reload_reads_a_changed_file(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-changed.service"
        await b.load(name, SLEEPER)
        b.write(name, FAILING_ONESHOT)
        await b.manager.reload()
        job = await b.manager.start_unit(name)
        assert await b.manager.wait_job(job, JOB_TIMEOUT) == "failed"


@async_test
async def test_unit_flow_load_start_stop_unload(systemd: OpenBackend) -> None:
    """fleet's TestSystemdUnitFlow, as the agent drives it."""
    async with systemd() as b:
        name = "ct-flow.service"
        units = UnitDirectory(b.host)
        assert units.list() == []
        path = b.write(name, SLEEPER)
        assert units.list() == [name]
        await b.manager.link_unit_files([path])
        await b.manager.reload()
        assert await b.states(name) == ("loaded", "inactive", "dead")
        assert await b.manager.unit_file_state(name) == "linked-runtime"

        job = await b.manager.start_unit(name)
        assert await b.manager.wait_job(job, JOB_TIMEOUT) == "done"
        assert await b.states(name) == ("loaded", "active", "running")

        job = await b.manager.stop_unit(name)
        assert await b.manager.wait_job(job, JOB_TIMEOUT) == "done"
        await b.manager.disable_unit_files([name])
        try:
            await b.manager.reset_failed_unit(name)
        except SystemdError as exc:
            if exc.dbus_name != NO_SUCH_UNIT:  # a stopped unit may already be gone
                raise
        units.remove(name)
        await b.manager.reload()
        assert units.list() == []
        assert await b.states(name) == ("not-found", "inactive", "dead")


CRASH_LOOP = "[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=1h\n"
ONESHOT_OK = "[Service]\nType=oneshot\nExecStart=/bin/true\n"


@async_test
async def test_result_names_how_a_service_ended(systemd: OpenBackend) -> None:
    async with systemd() as b:
        ok, failing = "ct-result-ok.service", "ct-result-fails.service"
        await b.load(ok, ONESHOT_OK)
        await b.load(failing, FAILING_SIMPLE)
        assert await b.manager.wait_job(await b.manager.start_unit(ok), JOB_TIMEOUT) == "done"
        await b.manager.start_unit(failing)
        await wait_for(
            lambda: b.states(failing),
            lambda s: s == ("loaded", "failed", "failed"),
            what="the unit failed",
        )
        assert await b.states(ok) == ("loaded", "inactive", "dead")  # ran and exited
        assert await b.manager.unit_results([ok, failing, "ct-unknown.socket"]) == {
            ok: "success",
            failing: "exit-code",
            "ct-unknown.socket": "",
        }


@async_test
async def test_a_crash_looping_service_waits_to_restart(systemd: OpenBackend) -> None:
    async with systemd() as b:
        name = "ct-crash-loop.service"
        await b.load(name, CRASH_LOOP)
        await b.manager.start_unit(name)
        await wait_for(
            lambda: b.states(name),
            lambda s: s == ("loaded", "activating", "auto-restart"),
            what="systemd waiting to restart it",
        )
        assert await b.manager.unit_results([name]) == {name: "exit-code"}


@async_test
async def test_a_job_result_outlives_a_wait_that_timed_out(systemd: OpenBackend) -> None:
    """wait_job(job, 0) only looks; the result is still there for a later look."""
    async with systemd() as b:
        name = "ct-job-later.service"
        await b.load(name, SLEEPER)
        job = await b.manager.start_unit(name)
        result = None
        for _ in range(200):  # sampling: a look must never lose the result
            try:
                result = await b.manager.wait_job(job, 0)
                break
            except Timeout:
                await wait_for(lambda: b.states(name), lambda _s: True, what="a moment")
        assert result == "done"
