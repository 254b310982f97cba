"""The reconcile loop: when woken, and every resync interval, bring systemd to what the store wants.

A pass reads the desired units (:class:`~fleet.agent.desired.DesiredReader`),
asks the pure :func:`fleet.core.agent_plan.plan_agent` what to do and has the
:class:`~fleet.agent.executor.ActionExecutor` do it. A pass that could not
read the store is retried after ``retry_interval`` and changes nothing (B7); a
pass with failed units runs again when the first of them may be retried.
Passes run only while the machine's presence is held. A unit whose
``StopAfterDisconnect`` has run out (:mod:`fleet.agent.disconnect`) is not
started until the presence is confirmed again; the pass then counts as failed,
so it is retried after ``retry_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from fleet.agent.desired import DesiredReader
from fleet.agent.executor import ActionExecutor
from fleet.core.agent_plan import ActionKind, plan_agent
from fleet.errors import StoreError
from fleet.ports import Clock

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        desired: DesiredReader,
        executor: ActionExecutor,
        registered: asyncio.Event,
        clock: Clock,
        *,
        resync_interval: float,
        retry_interval: float,
        debounce: float,
        after_pass: Callable[[], None],
        on_error: Callable[[str], None],
        may_start: Callable[[str, str], bool] = lambda name, hash: True,
    ) -> None:
        self.desired = desired
        self.executor = executor
        self.registered = registered
        self.clock = clock
        self.resync_interval = resync_interval
        self.retry_interval = retry_interval
        self.debounce = debounce
        self.passes = 0  # completed passes (every action succeeded)
        self._after_pass = after_pass
        self._on_error = on_error
        self._may_start = may_start
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Reconcile now instead of at the next resync."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self.registered.wait()
            ok = await self.reconcile_once()
            wait = self.resync_interval
            retry = self.executor.next_retry_in()
            if not ok:
                wait = min(wait, self.retry_interval if retry is None else retry)
            with contextlib.suppress(TimeoutError):
                async with self.clock.timeout(wait):
                    await self._wake.wait()
            if self.debounce > 0:
                await self.clock.sleep(self.debounce)  # coalesce a burst of watch events
            self._wake.clear()

    async def reconcile_once(self) -> bool:
        """One pass: read the desired units, plan, execute in order. True if every
        action succeeded. A store failure changes nothing locally (B7)."""
        try:
            desired = await self.desired.read()
        except StoreError as exc:
            log.warning("cannot read the desired units (changing nothing): %s", exc)
            self._on_error(str(exc))
            return False
        actions = plan_agent(desired, self.executor.current)
        # A unit whose StopAfterDisconnect ran out starts once the presence is confirmed.
        held = [
            a
            for a in actions
            if a.kind is ActionKind.START and not self._may_start(a.unit, desired[a.unit].hash)
        ]
        if held:
            log.info(
                "presence not confirmed: holding back the start of %s",
                ", ".join(a.unit for a in held),
            )
            actions = [a for a in actions if a not in held]
        ok = await self.executor.execute_plan(actions, desired) and not held
        if ok:
            self.passes += 1
        self._after_pass()
        return ok
