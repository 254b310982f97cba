"""SystemdManager against a real systemd (an nspawn machine): fleet's
TestSystemdUnitFlow, [Install] enabling (TestInstallUnit at systemd level),
job results that race their reply, and D-Bus error translation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from fleet.cluster import nodes
from fleet.errors import SystemdError, Timeout
from fleet.systemd.dbus import NO_SUCH_UNIT, SystemdManager, UnitChange, unit_name_from_path
from fleet.agent.unitdir import UnitDirectory
from tests.systemd.support import NodeUnitDir, wait_for

SLEEPER = "[Service]\nExecStart=/usr/bin/sleep 3000\n"


def run_with_systemd(node: nodes.Node, body: Callable[[SystemdManager], Awaitable[None]]) -> None:
    async def main() -> None:
        async with await SystemdManager().connect(node.bus) as manager:
            await body(manager)

    asyncio.run(main())


async def states(manager: SystemdManager, name: str) -> tuple[str, str, str]:
    return (await manager.unit_states([name]))[name]


def test_unit_flow_load_start_stop_unload(systemd_node: nodes.Node, unit_dir: NodeUnitDir) -> None:
    name = "h6-flow.service"
    units = UnitDirectory(unit_dir.host)

    async def body(manager: SystemdManager) -> None:
        assert units.list() == []
        units.write(name, SLEEPER)
        assert units.list() == [name]
        await manager.link_unit_files([str(unit_dir.inside / name)])
        await manager.reload()
        assert await states(manager, name) == ("loaded", "inactive", "dead")
        assert await manager.unit_file_state(name) == "linked-runtime"

        job = await manager.start_unit(name)
        assert await manager.wait_job(job, 5) == "done"
        assert await states(manager, name) == ("loaded", "active", "running")

        job = await manager.stop_unit(name)
        assert await manager.wait_job(job, 5) == "done"
        await manager.disable_unit_files([name])
        try:
            await manager.reset_failed_unit(name)
        except SystemdError as exc:  # a stopped unit may already be gone
            assert exc.dbus_name == NO_SUCH_UNIT
        units.remove(name)
        await manager.reload()
        assert units.list() == []
        assert await states(manager, name) == ("not-found", "inactive", "dead")

    run_with_systemd(systemd_node, body)


def test_install_section_wanted_by_starts_with_its_target(
    systemd_node: nodes.Node, unit_dir: NodeUnitDir
) -> None:
    hello, sidekick = "h6-hello.service", "h6-discovery.service"
    units = UnitDirectory(unit_dir.host)
    units.write(hello, SLEEPER)
    units.write(sidekick, SLEEPER + f"\n[Install]\nWantedBy={hello}\n")
    paths = [str(unit_dir.inside / n) for n in (hello, sidekick)]

    async def body(manager: SystemdManager) -> None:
        await manager.link_unit_files(paths)
        changes = await manager.enable_unit_files([paths[1]])
        assert any(kind == "symlink" for kind, _link, _dest in changes)
        await manager.reload()
        assert await manager.unit_file_state(sidekick) == "enabled-runtime"
        assert (await states(manager, sidekick))[1] == "inactive"
        await manager.wait_job(await manager.start_unit(hello), 5)
        await wait_for(
            lambda: states(manager, sidekick),
            lambda s: s[1] == "active",
            what="sidekick active after its WantedBy target started",
        )
        for name in (hello, sidekick):
            await manager.wait_job(await manager.stop_unit(name), 5)
        wants = Path(f"/proc/{systemd_node.leader_pid}/root/run/systemd/system/{hello}.wants")
        assert (wants / sidekick).is_symlink()
        await manager.disable_unit_files([hello, sidekick])
        await manager.reload()
        assert not (wants / sidekick).exists()

    run_with_systemd(systemd_node, body)


def test_signals_report_state_changes_and_job_results(
    systemd_node: nodes.Node, unit_dir: NodeUnitDir
) -> None:
    name = "h6-signals.service"
    UnitDirectory(unit_dir.host).write(name, SLEEPER)

    async def body(manager: SystemdManager) -> None:
        queue = manager.subscribe()
        await manager.link_unit_files([str(unit_dir.inside / name)])
        await manager.reload()
        # Wait for the result only after the job has surely finished: the
        # JobRemoved signal was recorded before anyone asked for it.
        job = await manager.start_unit(name)
        await wait_for(lambda: states(manager, name), lambda s: s[1] == "active")
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
            what="JobRemoved and PropertiesChanged for the unit",
        )
        assert await manager.wait_job(job, 0.5) == "done"
        manager.unsubscribe(queue)
        await manager.wait_job(await manager.stop_unit(name), 5)
        await manager.disable_unit_files([name])
        await manager.reload()

    run_with_systemd(systemd_node, body)


def test_errors_carry_the_dbus_name(systemd_node: nodes.Node) -> None:
    async def body(manager: SystemdManager) -> None:
        with pytest.raises(SystemdError) as caught:
            await manager.stop_unit("h6-no-such-unit.service")
        assert caught.value.dbus_name == NO_SUCH_UNIT
        assert "h6-no-such-unit.service" in str(caught.value)
        with pytest.raises(Timeout):
            await manager.wait_job("/org/freedesktop/systemd1/job/999999999", 0.05)
        unknown = await manager.unit_states(["h6-unknown.service"])
        assert unknown == {"h6-unknown.service": ("not-found", "inactive", "dead")}

    run_with_systemd(systemd_node, body)


def test_connect_to_a_missing_bus_is_a_systemd_error(tmp_path: object) -> None:
    async def main() -> None:
        with pytest.raises(SystemdError, match="cannot connect"):
            await SystemdManager().connect("unix:path=/nonexistent/h6/bus")

    asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/org/freedesktop/systemd1/unit/hello_2eservice", "hello.service"),
        ("/org/freedesktop/systemd1/unit/foo_40bar_2eservice", "foo@bar.service"),
        ("/org/freedesktop/systemd1/unit/a_2db_5fc_2esocket", "a-b_c.socket"),
    ],
    ids=["dot", "at", "dash-underscore"],
)
def test_unit_name_from_path(path: str, name: str) -> None:
    assert unit_name_from_path(path) == name
