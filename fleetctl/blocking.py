"""Running a command's coroutine without an event loop, when nothing in it can suspend.

Over the API driver every client call is a coroutine that blocks on its socket
and never suspends (:mod:`fleetctl.drivers.http`), so :func:`run_blocking`
drives the whole command with one ``send`` and fleetctl never imports asyncio
(~20 ms). :class:`BlockingClock` is the clock of such a run: waiting sleeps the
process. Anything that does suspend (an asyncio future, task or timeout) is a
programming error there, reported as such instead of hanging.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in this thread; RuntimeError if it tries to suspend."""
    try:
        awaited = coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError(f"a blocking fleetctl run awaited {awaited!r}: it needs an event loop")


class _Deadline:
    """``timeout`` of a blocking run: a call in the block cannot be interrupted (each
    request has its own socket timeout), so an overrun is reported when it ends."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._end = 0.0

    async def __aenter__(self) -> _Deadline:
        self._end = time.monotonic() + self._seconds
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None and time.monotonic() > self._end:
            raise TimeoutError(f"took longer than {self._seconds:g}s")


class BlockingClock:
    """:class:`fleet.ports.Clock` for :func:`run_blocking`: ``sleep`` blocks the process."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # noqa: ASYNC251 (no event loop to block: see run_blocking)

    def timeout(self, seconds: float) -> _Deadline:
        return _Deadline(seconds)
