"""Unit-state publishing: what systemd does with the units this agent holds.

:class:`StatePublisher` reads systemd's (load, active, sub) of every held unit
(with systemd's Result of those not active, the result of the start job the
agent queued, and the agent's trouble with it, if any) and writes each state
that differs from the one last published, on the presence lease. A unit the
agent failed to load is published too, as inactive with its error, so the
failure shows in list-units; the state of a unit neither held nor failing is
deleted. It refreshes when systemd hints that a held unit changed, when asked
(after a reconcile pass, after registering) and every ``resync_interval``: no
poll of every unit every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fleet.agent.executor import ActionExecutor
from fleet.agent.presence import Presence
from fleet.core.events import EventKind
from fleet.core.model import DesiredState, UnitState
from fleet.core.outcome import QUEUED
from fleet.errors import InvalidInput, StoreError, SystemdError
from fleet.ports import AgentStore, Clock, MachineLease, SystemdManager, UnitChange

if TYPE_CHECKING:
    from fleet.metrics import FleetMetrics

log = logging.getLogger(__name__)

_UNKNOWN = ("not-found", "inactive", "dead")
# The agent trims the event streams it wrote to after this many events (B13).
TRIM_AFTER = 50


class StatePublisher:
    """Publishes the states of ``held`` (the executor's live view) for ``presence``."""

    def __init__(
        self,
        store: AgentStore,
        systemd: SystemdManager,
        presence: Presence,
        executor: ActionExecutor,
        clock: Clock,
        *,
        resync_interval: float,
        debounce: float,
        retry_interval: float,
        metrics: FleetMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.systemd = systemd
        self.presence = presence
        self.machine_id = presence.machine.id
        self.executor = executor
        self.held = executor.current
        self.clock = clock
        self.resync_interval = resync_interval
        self.debounce = debounce
        self.retry_interval = retry_interval
        self._dirty = asyncio.Event()
        self._published: dict[str, UnitState] = {}
        # The lease ``_published`` describes: states hang on a lease.
        self._published_on: MachineLease | None = None
        # B13: the start (by the executor's count) whose result was recorded.
        self._start_recorded: dict[str, int] = {}
        self._events_since_trim = 0

    def mark_dirty(self) -> None:
        """Refresh soon (debounced) instead of at the next resync."""
        self._dirty.set()

    async def follow(self, changes: asyncio.Queue[UnitChange]) -> None:
        """Turn systemd's hints about held units into refreshes (forever)."""
        while True:
            change = await changes.get()
            if self.metrics is not None:
                self.metrics.agent_hints_queued(changes.qsize())
            if change.unit in self.held or change.unit in self.executor.troubles:
                self._dirty.set()

    async def run(self) -> None:
        """Refresh on every hint or request, and every resync interval (forever)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with self.clock.timeout(self.resync_interval):
                    await self._dirty.wait()
            if self.debounce > 0:
                await self.clock.sleep(self.debounce)
            self._dirty.clear()
            try:
                await self.publish()
            except (StoreError, SystemdError) as exc:
                log.warning("unit state publishing failed: %s", exc)
                await self.clock.sleep(self.retry_interval)
                self._dirty.set()

    async def publish(self) -> None:
        """Publish every held unit's state that changed; delete states of units
        no longer held."""
        lease = self.presence.lease
        if lease is None or lease.lost:
            return
        if lease is not self._published_on:
            await self._rebase(lease)
        held = dict(self.held)
        troubles = dict(self.executor.troubles)
        triples = await self.systemd.unit_states(held) if held else {}
        quiet = [n for n in held if triples.get(n, _UNKNOWN)[1] != "active"]
        results = await self.systemd.unit_results(quiet) if quiet else {}
        started = await self.executor.start_results_now()
        wanted: dict[str, UnitState] = {}
        for name, unit in held.items():
            if not unit.hash:
                continue
            load, active, sub = triples.get(name, _UNKNOWN)
            trouble = troubles.get(name)
            wanted[name] = UnitState(
                name,
                self.machine_id,
                load,
                active,
                sub,
                unit.hash,
                unit.state,
                result=results.get(name, ""),
                start_result=started.get(name)
                or (QUEUED if name in self.executor.start_jobs else ""),
                error=trouble.error if trouble is not None else "",
            )
        for name, trouble in troubles.items():
            if name not in held and trouble.hash:
                # Not held: the agent could not even load it. Inactive, with why.
                load, active, sub = _UNKNOWN
                wanted[name] = UnitState(
                    name, self.machine_id, load, active, sub, trouble.hash,
                    DesiredState.INACTIVE, error=trouble.error,
                )  # fmt: skip
        if self.metrics is not None:
            self.metrics.agent_unit_states(
                Counter(triples.get(name, _UNKNOWN)[1] for name in held if held[name].hash)
            )
        self._note_events(wanted, started)
        for name, state in sorted(wanted.items()):
            if self._published.get(name) != state:
                try:
                    await self.store.publish_unit_state(lease, state)
                except InvalidInput as exc:
                    # A name the registry cannot even key: nothing to publish.
                    log.warning("unit %s: state not published: %s", name, exc)
                    continue
                self._published[name] = state
        for name in sorted(set(self._published) - set(wanted)):
            await self.store.delete_unit_state(name, self.machine_id)
            del self._published[name]
        await self.flush_events()

    def _note_events(self, wanted: dict[str, UnitState], started: Mapping[str, str]) -> None:
        """Events from systemd: a start job's result, a unit newly failed (B13)."""
        executor = self.executor
        if executor.event_factory is None:
            return
        for name, result in started.items():
            seq = executor.start_seq.get(name, 0)
            if not result or result == QUEUED or self._start_recorded.get(name) == seq:
                continue
            self._start_recorded[name] = seq
            if result == "done":
                executor.event(EventKind.STARTED, name, "started (start job done)", result)
            else:
                executor.event(EventKind.FAILED, name, f"start job {result}", result)
        for name, state in wanted.items():
            before = self._published.get(name)
            was_failed = before is not None and before.active_state == "failed"
            if state.active_state == "failed" and not was_failed:
                why = f" ({state.result})" if state.result else ""
                executor.event(EventKind.FAILED, name, f"unit failed{why}", state.result or None)
        for name in set(self._start_recorded) - set(executor.start_seq):
            del self._start_recorded[name]

    async def flush_events(self) -> None:
        """Write the events queued since the last publish, in batched transactions;
        trim this agent's streams every :data:`TRIM_AFTER` events."""
        events = self.executor.events
        if not events:
            return
        batch = list(events)
        await self.store.record_events(batch)
        del events[: len(batch)]
        self._events_since_trim += len(batch)
        if self._events_since_trim >= TRIM_AFTER:
            self._events_since_trim = 0
            await self.store.trim_events()

    async def withdraw(self) -> None:
        """Delete every state this agent published (fleet's Purge)."""
        for name in sorted(self._published):
            await self.store.delete_unit_state(name, self.machine_id)
            del self._published[name]

    async def _rebase(self, lease: MachineLease) -> None:
        if self.presence.resumed:
            # The previous process's states still hang on this lease: knowing
            # them lets this publish delete those of units no longer held.
            published = {
                s.name: s
                for s in await self.store.list_unit_states()
                if s.machine_id == self.machine_id
            }
        else:
            published = {}  # a fresh lease carries no states
        self._published, self._published_on = published, lease
