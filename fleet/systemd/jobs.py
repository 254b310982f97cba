"""Results of systemd jobs, by job path, for whoever waits on them and whenever.

A job's end (``JobRemoved``) can arrive before the caller even learned the job's
path, or after a wait for it timed out: results are kept (boundedly) until
claimed, and a wait that gave up leaves nothing behind that could swallow a
later result. Both systemd adapters keep their jobs here.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from fleet.errors import SystemdError, Timeout

MAX_UNCLAIMED = 1024  # results nobody asked for yet; a manager that never waits cannot grow this


class JobResults:
    def __init__(self) -> None:
        self._unclaimed: OrderedDict[str, str] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[str]] = {}

    def finished(self, job: str, result: str) -> None:
        """Record that ``job`` ended with ``result``."""
        fut = self._waiters.pop(job, None)
        if fut is not None and not fut.done():
            fut.set_result(result)
            return
        self._unclaimed[job] = result
        while len(self._unclaimed) > MAX_UNCLAIMED:
            self._unclaimed.popitem(last=False)

    async def wait(self, job: str, timeout: float) -> str:  # noqa: ASYNC109
        """The result of ``job``; Timeout after ``timeout`` seconds (0: only look)."""
        if (result := self._unclaimed.pop(job, None)) is not None:
            return result
        fut = self._waiters.get(job)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._waiters[job] = fut
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError as exc:
            # Nobody waits any more: a later result goes to the unclaimed ones.
            self._waiters.pop(job, None)
            raise Timeout(f"systemd job {job} not finished after {timeout:g}s") from exc
        finally:
            if fut.done():
                self._waiters.pop(job, None)

    def fail_waiters(self, why: str) -> None:
        """End every pending wait with SystemdError(``why``) (the connection is gone)."""
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(SystemdError(why))
        self._waiters.clear()
