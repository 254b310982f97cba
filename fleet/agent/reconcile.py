"""The reconcile loop: when woken, and every resync interval, bring systemd to what the store wants.

A pass reads the desired units (:class:`~fleet.agent.desired.DesiredReader`),
asks the pure :func:`fleet.core.agent_plan.plan_agent` what to do and has the
:class:`~fleet.agent.executor.ActionExecutor` do it. A pass that could not
read the store is retried after ``retry_interval`` and changes nothing (B7); a
pass with failed units runs again when the first of them may be retried.
Passes run only while the machine's presence is held. A pass's starts are
judged after its other actions ran: a unit whose ``StopAfterDisconnect`` has
run out (:mod:`fleet.agent.disconnect`) is not started until the presence is
confirmed again, and no unit starts while a unit it conflicts with still runs
here (:class:`ConflictGate`: a global unit and a conflicting unit that the
engine is moving away, or that this pass is stopping). A held-back start makes
the pass count as failed, so it is retried after ``retry_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from fleet.agent.desired import DesiredReader
from fleet.agent.executor import ActionExecutor
from fleet.agent.localreqs import LocalRequirements
from fleet.core.agent_plan import ActionKind, CurrentUnit, plan_agent
from fleet.core.checks import units_conflict
from fleet.errors import StoreError, SystemdError
from fleet.ports import Clock, SystemdManager

if TYPE_CHECKING:
    from fleet.metrics import FleetMetrics

log = logging.getLogger(__name__)


# systemd active states in which a conflicting unit no longer counts as running.
_STOPPED = frozenset({"inactive", "failed"})


class ConflictGate:
    """Which units may not start now because a unit they conflict with (fleet's
    symmetric Conflicts, either unit's globs matching the other's name) still runs
    here, in systemd's own view (a stop job may still be under way)."""

    def __init__(
        self,
        systemd: SystemdManager,
        requirements: LocalRequirements,
        current: dict[str, CurrentUnit],
    ) -> None:
        self.systemd = systemd
        self.requirements = requirements
        self.current = current

    async def blocked(self, names: list[str]) -> dict[str, str]:
        """name -> why, for those of ``names`` (units about to start) that must wait."""
        self.requirements.forget_except(set(self.current) | set(names))
        held = {
            n: r
            for n, u in self.current.items()
            if (r := self.requirements.get(n, u.hash)) is not None
        }
        holders = [(n, r.conflicts) for n, r in held.items() if r.conflicts]
        rivals: dict[str, list[str]] = {}
        for name in names:
            mine = held.get(name)
            globs = mine.conflicts if mine is not None else ()
            found = [o for o in held if units_conflict(name, globs, o, ())] if globs else []
            found += [o for o, theirs in holders if units_conflict(name, (), o, theirs)]
            if found:
                rivals[name] = sorted(set(found))
        if not rivals:
            return {}
        others = sorted({o for found in rivals.values() for o in found} - set(names))
        try:
            states = await self.systemd.unit_states(others) if others else {}
        except SystemdError as exc:
            return dict.fromkeys(rivals, f"cannot read systemd's states: {exc}")
        out: dict[str, str] = {}
        starting: set[str] = set()
        for name in names:
            found = rivals.get(name, [])
            running = [o for o in found if states.get(o, ("", "inactive", ""))[1] not in _STOPPED]
            # Two conflicting units about to start together: the first in name order goes.
            running += [o for o in found if o in starting and o not in running]
            if running:
                out[name] = f"it conflicts with {', '.join(running)}, which runs here"
            else:
                starting.add(name)
        return out


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
        metrics: FleetMetrics | None = None,
        may_start: Callable[[str, str], bool] = lambda name, hash: True,
        conflicts: ConflictGate | None = None,
    ) -> None:
        self.metrics = metrics
        self.desired = desired
        self.executor = executor
        self.registered = registered
        self.clock = clock
        self.resync_interval = resync_interval
        self.retry_interval = retry_interval
        self.debounce = debounce
        self.passes = 0  # completed passes (every action succeeded)
        self.attempts = 0  # passes begun
        self._after_pass = after_pass
        self._on_error = on_error
        self._may_start = may_start
        self._conflicts = conflicts
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
        self.attempts += 1
        started = self.clock.monotonic()
        try:
            return await self._reconcile_once()
        finally:
            if self.metrics is not None:
                self.metrics.agent_pass(self.clock.monotonic() - started)

    async def _reconcile_once(self) -> bool:
        try:
            desired = await self.desired.read()
        except StoreError as exc:
            log.warning("cannot read the desired units (changing nothing): %s", exc)
            self._on_error(str(exc))
            return False
        actions = plan_agent(desired, self.executor.current)
        # Starts run last (fleet's order) and are judged only then, after this pass's
        # stops and unloads: a unit never starts beside a running unit it conflicts
        # with, and one whose StopAfterDisconnect ran out waits for its presence.
        starts = [a for a in actions if a.kind is ActionKind.START]
        ok = await self.executor.execute_plan(
            [a for a in actions if a.kind is not ActionKind.START], desired
        )
        held = [a.unit for a in starts if not self._may_start(a.unit, desired[a.unit].hash)]
        if held:
            log.info("presence not confirmed: holding back the start of %s", ", ".join(held))
        starts = [a for a in starts if a.unit not in held]
        if self._conflicts is not None and starts:
            blocked = await self._conflicts.blocked([a.unit for a in starts])
            for name, why in blocked.items():
                log.info("holding back the start of %s: %s", name, why)
            held += blocked
            starts = [a for a in starts if a.unit not in blocked]
        if starts:
            ok = await self.executor.execute_plan(starts, desired) and ok
        ok = ok and not held
        if ok:
            self.passes += 1
        self._after_pass()
        return ok
