"""The clock port: the only way engine and agent read time or wait for it.

Injected so that loops can be driven by tests; :class:`SystemClock` is the
real one. ``monotonic`` measures intervals, ``time`` is wall-clock time for
display only (never compared across machines).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Raise TimeoutError in the block if it takes longer than ``seconds``."""


class SystemClock:
    """The event loop's clock (``time.monotonic``) and the wall clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)
