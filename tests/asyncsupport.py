"""Helpers for coroutine tests (pytest here has no asyncio plugin).

``async_test`` runs a coroutine test in its own event loop with an overall
deadline, keeping the fixture signature; ``eventually`` polls a condition with
a deadline instead of sleeping for a guessed time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

TEST_DEADLINE = 30.0


def async_test(fn: Callable[P, Awaitable[Any]]) -> Callable[P, None]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(TEST_DEADLINE):
                await fn(*args, **kwargs)

        asyncio.run(bounded())

    return run


# ASYNC109: the deadline is the poller's own, so its failure names it and the last value
# seen (an asyncio.timeout around the call could say neither).
async def eventually(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], object] = bool,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``condition`` holds on its value (by default: the value
    is truthy) and return that value; fail with a clear message at the deadline.
    The one poller of the coroutine tests: for state nobody can await."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if condition(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)
