"""What only the D-Bus adapter has: [Install] enabling as real symlinks on the
machine (TestInstallUnit at systemd level), connecting, and object-path decoding.

The behaviour both systemds share (fleet's TestSystemdUnitFlow, job results that
race their reply, D-Bus error names) is in ``test_contract.py``, which runs it
against this adapter on a real systemd and against the in-memory one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from fleet.agent.unitdir import UnitDirectory
from fleet.cluster import nodes
from fleet.errors import SystemdError
from fleet.systemd.dbus import SystemdManager, unit_name_from_path
from tests.systemd.support import NodeUnitDir, wait_for

SLEEPER = "[Service]\nExecStart=/usr/bin/sleep 3000\n"


def run_with_systemd(node: nodes.Node, body: Callable[[SystemdManager], Awaitable[None]]) -> None:
    async def main() -> None:
        async with await SystemdManager().connect(node.bus) as manager:
            await body(manager)

    asyncio.run(main())


async def states(manager: SystemdManager, name: str) -> tuple[str, str, str]:
    return (await manager.unit_states([name]))[name]


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
