"""A :class:`~fleet.ports.SystemdManager` that times every call into the agent's metrics.

The agent wraps whatever manager it is given (D-Bus in fleetd, the in-memory
one in tests), so ``fleet_agent_dbus_call_duration_seconds{method}`` measures
each call as the agent waits for it, failures included (counted apart in
``fleet_agent_dbus_call_failure_count_total``). ``wait_job`` is not timed: it
waits for a job to finish, not for systemd to answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from fleet.ports import FileChange, SystemdManager, UnitChange, UnitTriple

if TYPE_CHECKING:
    from fleet.metrics import FleetMetrics

T = TypeVar("T")


class TimedSystemd:
    def __init__(self, inner: SystemdManager, metrics: FleetMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def _timed(self, method: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            result = await call
        except BaseException:
            self.metrics.agent_dbus_call(method, time.perf_counter() - start, failed=True)
            raise
        self.metrics.agent_dbus_call(method, time.perf_counter() - start)
        return result

    async def link_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        return await self._timed("LinkUnitFiles", self.inner.link_unit_files(paths, runtime, force))

    async def enable_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        return await self._timed(
            "EnableUnitFiles", self.inner.enable_unit_files(paths, runtime, force)
        )

    async def disable_unit_files(
        self, names: Sequence[str], runtime: bool = True
    ) -> list[FileChange]:
        return await self._timed("DisableUnitFiles", self.inner.disable_unit_files(names, runtime))

    async def reload(self) -> None:
        await self._timed("Reload", self.inner.reload())

    async def start_unit(self, name: str, mode: str = "replace") -> str:
        return await self._timed("StartUnit", self.inner.start_unit(name, mode))

    async def stop_unit(self, name: str, mode: str = "replace") -> str:
        return await self._timed("StopUnit", self.inner.stop_unit(name, mode))

    async def reset_failed_unit(self, name: str) -> None:
        await self._timed("ResetFailedUnit", self.inner.reset_failed_unit(name))

    async def wait_job(self, job: str, timeout: float) -> str:  # noqa: ASYNC109 (the port's)
        return await self.inner.wait_job(job, timeout)

    async def unit_states(self, names: Iterable[str]) -> dict[str, UnitTriple]:
        return await self._timed("GetUnitStates", self.inner.unit_states(names))

    async def unit_results(self, names: Iterable[str]) -> dict[str, str]:
        return await self._timed("GetUnitResults", self.inner.unit_results(names))

    def subscribe(self) -> asyncio.Queue[UnitChange]:
        return self.inner.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[UnitChange]) -> None:
        self.inner.unsubscribe(queue)
