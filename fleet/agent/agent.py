"""The agent: one machine's components, run as tasks that live and die together.

:class:`Agent` builds the agent's parts on the ports it is given (the store,
systemd, a clock) and runs them: the presence (:mod:`fleet.agent.presence`),
the watches that wake the reconciler (:mod:`fleet.agent.watches`), the
reconcile loop (:mod:`fleet.agent.reconcile`, executing through
:mod:`fleet.agent.executor`) and unit-state publishing
(:mod:`fleet.agent.states`). Until :meth:`Agent.stop` none of those tasks may
end: if one does, :meth:`Agent.run` raises, so fleetd never carries on without
a working agent.

Two promises beyond fleet: an unreachable store changes nothing locally (B7),
and a restarted agent adopts the unit files it finds instead of reloading or
restarting them (B8). A unit may opt out of the first with
``StopAfterDisconnect`` (:mod:`fleet.agent.disconnect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fleet.agent.desired import DesiredReader
from fleet.agent.disconnect import DisconnectGuard
from fleet.agent.executor import ActionExecutor
from fleet.agent.localreqs import LocalRequirements
from fleet.agent.presence import Presence
from fleet.agent.reconcile import ConflictGate, Reconciler
from fleet.agent.states import StatePublisher
from fleet.agent.timed import TimedSystemd
from fleet.agent.unitdir import UnitDirectory
from fleet.agent.watches import agent_scopes, wake_on_changes
from fleet.core.agent_plan import AgentReason, CurrentUnit, plan_agent
from fleet.core.events import EventFactory
from fleet.core.model import Machine
from fleet.errors import FleetError, StoreError
from fleet.ports import (
    AgentStore,
    Clock,
    MachineLease,
    Scope,
    SystemClock,
    SystemdManager,
    Watchable,
)

if TYPE_CHECKING:
    from fleet.metrics import FleetMetrics

log = logging.getLogger(__name__)

# How long stopping may wait for the agent's tasks to end after cancelling them.
STOP_TIMEOUT = 10.0


class AgentRegistry(AgentStore, Watchable, Protocol):
    """What the agent needs from the registry (EtcdRegistry implements it)."""


class Agent:
    """One machine's agent. ``await agent.run()`` until :meth:`stop` is called.

    ``units_dir`` is where this process writes unit files; ``systemd_units_dir``
    is the same directory as the managed systemd sees it (they differ only when
    the agent drives a container's systemd from outside, as tests do)."""

    def __init__(
        self,
        store: AgentRegistry,
        systemd: SystemdManager,
        machine: Machine,
        *,
        units_dir: str | Path,
        ttl: float,
        clock: Clock = SystemClock(),  # noqa: B008 -- stateless, shared safely
        resync_interval: float = 5.0,
        systemd_units_dir: str | Path | None = None,
        shutdown_stops_units: bool = False,
        debounce: float = 0.02,
        retry_interval: float = 1.0,
        job_timeout: float = 30.0,
        register_backoff: tuple[float, float] = (1.0, 60.0),
        watches: bool = True,
        lease_file: str | Path | None = None,
        metrics: FleetMetrics | None = None,
        events: bool = True,
    ) -> None:
        if metrics is not None:
            systemd = TimedSystemd(systemd, metrics)
        self.store = store
        self.systemd = systemd
        self.machine = machine
        self.clock = clock
        self.units = UnitDirectory(units_dir)
        self.shutdown_stops_units = shutdown_stops_units
        self.watches = watches
        self.retry_interval = retry_interval
        self.last_error: str | None = None
        self._stopping = asyncio.Event()

        self.presence = Presence(
            store,
            machine,
            clock,
            ttl=ttl,
            backoff=register_backoff,
            # Where the presence lease id survives a fleetd restart (B8).
            lease_file=Path(lease_file) if lease_file is not None else None,
            on_registered=self._on_registered,
            on_error=self._report,
        )
        self.executor = ActionExecutor(
            store,
            systemd,
            self.units,
            systemd_units_dir=Path(systemd_units_dir or units_dir),
            job_timeout=job_timeout,
            clock=clock,
            retry_interval=retry_interval,
            on_error=self._report,
            metrics=metrics,
            # B13: what the agent does with its units, in the units' histories.
            events=EventFactory(machine.id) if events else None,
            machine_id=machine.id,
        )
        self.states = StatePublisher(
            store,
            systemd,
            self.presence,
            self.executor,
            clock,
            resync_interval=resync_interval,
            debounce=debounce,
            retry_interval=retry_interval,
            metrics=metrics,
        )
        self.requirements = LocalRequirements(self.units)
        self.guard = DisconnectGuard(
            self.presence, systemd, self.requirements, self.executor.current, clock
        )
        self.reconciler = Reconciler(
            DesiredReader(store, machine),
            self.executor,
            self.presence.registered,
            clock,
            resync_interval=resync_interval,
            retry_interval=retry_interval,
            debounce=debounce,
            after_pass=self.states.mark_dirty,
            on_error=self._report,
            metrics=metrics,
            may_start=self.guard.may_start,
            conflicts=ConflictGate(systemd, self.requirements, self.executor.current),
        )

    # ---- public ---------------------------------------------------------------------

    @property
    def registered(self) -> asyncio.Event:
        """Set while this machine's presence is held (the agent reconciles only then)."""
        return self.presence.registered

    @property
    def lease(self) -> MachineLease | None:
        return self.presence.lease

    @property
    def passes(self) -> int:
        """Completed reconcile passes (every action succeeded)."""
        return self.reconciler.passes

    @property
    def current(self) -> Mapping[str, CurrentUnit]:
        """The units this agent holds and what it did with them."""
        return dict(self.executor.current)

    def stop(self) -> None:
        """Ask :meth:`run` to finish (after purging, if ``shutdown_stops_units``)."""
        self._stopping.set()

    def wake(self) -> None:
        """Reconcile now instead of at the next resync."""
        self.reconciler.wake()

    async def reconcile_once(self) -> bool:
        return await self.reconciler.reconcile_once()

    async def publish_states(self) -> None:
        await self.states.publish()

    async def run(self) -> None:
        """Run until :meth:`stop`. Raises if a task of the agent ends before that
        (its exception, or FleetError naming it), after cancelling the others."""
        self.units.ensure()
        await self.executor.adopt()
        changes = self.systemd.subscribe()
        parts: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("agent-presence", self.presence.run()),
            ("agent-reconcile", self.reconciler.run()),
            ("agent-states", self.states.run()),
            ("agent-systemd", self.states.follow(changes)),
            ("agent-disconnect", self.guard.run()),
        ]
        if self.watches:  # else fleet's disable_watches: the periodic resync alone drives it
            parts += [
                (f"agent-watch {scope.topic}", self._watch(scope))
                for scope in agent_scopes(self.machine.id)
            ]
        tasks = [asyncio.create_task(coro, name=name) for name, coro in parts]
        failure: BaseException | None = None
        try:
            await self._supervise(tasks)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            await self._cancel(tasks, failure)
            self.systemd.unsubscribe(changes)
        if self.shutdown_stops_units:
            await self._purge()

    # ---- tasks ----------------------------------------------------------------------

    async def _supervise(self, tasks: Sequence[asyncio.Task[None]]) -> None:
        stopping = asyncio.create_task(self._stopping.wait(), name="agent-stopping")
        try:
            done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        for task in tasks:
            if task not in done:
                continue
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
            if not self._stopping.is_set():
                how = "was cancelled" if task.cancelled() else "ended"
                raise FleetError(f"agent task {task.get_name()} {how} while the agent runs")

    async def _cancel(
        self, tasks: Sequence[asyncio.Task[None]], failure: BaseException | None
    ) -> None:
        for task in tasks:
            task.cancel()
        # Bounded: a task stuck in a library call must not hold fleetd's shutdown.
        with contextlib.suppress(TimeoutError):
            async with self.clock.timeout(STOP_TIMEOUT):
                await asyncio.wait(tasks)
        for task in tasks:
            if not task.done():
                log.error("agent task %s did not stop within %gs", task.get_name(), STOP_TIMEOUT)
            elif not task.cancelled() and (exc := task.exception()) not in (None, failure):
                # Retrieved here so that a second failure is not lost to the first.
                log.error("agent task %s failed too: %r", task.get_name(), exc)

    async def _watch(self, scope: Scope) -> None:
        await wake_on_changes(
            self.store, scope, self.reconciler.wake, self.clock, retry_interval=self.retry_interval
        )

    def _on_registered(self) -> None:
        self.reconciler.wake()
        self.states.mark_dirty()

    def _report(self, error: str) -> None:
        self.last_error = error

    # ---- shutdown -------------------------------------------------------------------

    async def _purge(self) -> None:
        """fleet's Purge: stop and unload everything, drop states, leave the cluster."""
        actions = [
            dataclasses.replace(a, reason=AgentReason.PURGE)
            for a in plan_agent({}, self.executor.current)
        ]
        await self.executor.execute_plan(actions, {})
        with contextlib.suppress(StoreError):
            await self.states.withdraw()
        with contextlib.suppress(StoreError):
            await self.presence.leave()
