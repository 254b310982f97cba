"""The in-memory systemd's test controls (its systemd behaviour is the contract
suite's business): recorded calls, injected failures, crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import SystemdError
from fleet.ports import SystemdManager
from fleet.systemd.memory import OPERATIONS, InMemorySystemd
from tests.asyncsupport import async_test

SLEEPER = "[Service]\nExecStart=/usr/bin/sleep 3000\n"


def test_it_is_a_systemd_manager_and_every_operation_is_a_method() -> None:
    manager: SystemdManager = InMemorySystemd()
    assert all(callable(getattr(manager, op)) for op in OPERATIONS)
    with pytest.raises(ValueError, match="no operation 'calls'"):
        InMemorySystemd().fail("calls")


@async_test
async def test_failures_are_injected_recorded_and_run_out(tmp_path: Path) -> None:
    (tmp_path / "a.service").write_text(SLEEPER)
    path = str(tmp_path / "a.service")
    systemd = InMemorySystemd()
    systemd.fail("link_unit_files", times=2)
    for _ in range(2):
        with pytest.raises(SystemdError, match="injected"):
            await systemd.link_unit_files([path])
    await systemd.link_unit_files([path])
    systemd.fail("reload", RuntimeError("bug"), times=None)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await systemd.reload()
    systemd.clear_failures()
    await systemd.reload()
    assert systemd.calls == [("link_unit_files", path)] * 3 + [("reload", "")] * 4


@async_test
async def test_a_crash_fails_a_running_unit_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "a.service").write_text(SLEEPER)
    systemd = InMemorySystemd()
    await systemd.link_unit_files([str(tmp_path / "a.service")])
    await systemd.reload()
    with pytest.raises(ValueError, match="not running"):
        systemd.crash("a.service")
    await systemd.start_unit("a.service")
    queue = systemd.subscribe()
    systemd.crash("a.service")
    assert (await systemd.unit_states(["a.service"]))["a.service"] == ("loaded", "failed", "failed")
    change = queue.get_nowait()
    assert (change.unit, change.active, change.sub) == ("a.service", "failed", "failed")
    assert systemd.started("a.service") == 1
