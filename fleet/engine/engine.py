"""The engine: leader election, a watch-fed view, and fenced, batched placements.

Owns fleetd's engine component. Every fleetd campaigns for ``engine/leader``;
the one that holds it relists the registry once, keeps an in-memory
:class:`~fleet.engine.view.ClusterState` current from watches, and after every
burst of relevant changes (and every ``reconcile_interval``) runs the pure
scheduler and writes its decisions through the leader-fenced
``apply_schedule``. A new leader adopts the schedule it finds: on an unchanged
cluster its first plan is empty. While etcd is unreachable it writes nothing;
when etcd answers again it relists and replans (feature B7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import fleet
from fleet.core.events import Decision, Event, EventFactory, MachineWatch, schedule_events
from fleet.core.maintenance import DrainStatus
from fleet.core.scheduler import Plan, Snapshot, plan
from fleet.engine.campaign import ENGINE_VERSION, Campaign, EngineRegistry
from fleet.engine.drains import DRAIN_TICK, DrainCoordinator
from fleet.engine.view import WATCHED, ClusterState, PassWrites
from fleet.errors import NotLeader, StoreCompacted, StoreError, StoreUnavailable
from fleet.metrics import FleetMetrics
from fleet.ports import (
    Clock,
    Leadership,
    ReasonChanged,
    ScheduleChange,
    Scope,
    SystemClock,
    Topic,
)

log = logging.getLogger(__name__)

# A burst of watch events (a fleetctl start of 100 units, a machine leaving with
# its states) is coalesced into one pass by waiting this long after the first.
DEBOUNCE = 0.02
# Above this many units the plan runs in a worker thread so watches keep flowing.
THREAD_THRESHOLD = 2_000
# An own schedule write whose watch echo never came (deleting a key that was
# already gone) stops shadowing that key after this long.
PENDING_TTL = 10.0
# Unreferenced unit bodies are collected every this many passes (feature B9).
GC_EVERY_PASSES = 30
# A machine whose presence expired stays listed as lost this long (issue 11).
LOST_RETENTION = 3600.0
# Event streams written to are trimmed to their bound every this many passes (B13).
TRIM_EVERY_PASSES = 10


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    """Counters since the engine started (``statistics()``)."""

    leader: bool
    leader_since: float | None  # wall-clock time leadership was gained
    elections_won: int
    passes: int
    placements: int
    removals: int
    rewrites: int
    reasons_written: int
    failures: int
    relists: int
    bodies_collected: int
    last_pass_seconds: float
    units: int
    machines: int


class _Relist(Exception):
    """Internal: the view is no longer trustworthy (compaction, store outage)."""


class Engine:
    """fleetd's engine; ``run()`` until cancelled."""

    def __init__(
        self,
        registry: EngineRegistry,
        machine_id: str,
        *,
        reconcile_interval: float = 2.0,
        version: str = fleet.__version__,
        engine_version: int = ENGINE_VERSION,
        lease_ttl: float | None = None,
        planner: Callable[[Snapshot], Plan] = plan,
        metrics: FleetMetrics | None = None,
        machine_grace: float = 0.0,
        watches: bool = True,
        clock: Clock | None = None,
        lost_retention: float = LOST_RETENTION,
        events: bool = True,
    ) -> None:
        self._registry = registry
        self._lost_retention = lost_retention
        # The machine ids of the last sweep of lost machines (None: none this term).
        self._swept: frozenset[str] | None = None
        # B13: placements, removals, unplaceable units and machines coming, going
        # and cordoned become events, written in the pass's fenced transactions.
        self._events = EventFactory(machine_id) if events else None
        self._machine_watch = MachineWatch()
        self._clock = clock or SystemClock()
        self._metrics = metrics
        # fleet's disable_watches: no etcd watches; the view is relisted every interval.
        self._watches = watches
        self._machine_id = machine_id
        self._interval = reconcile_interval
        self._version = version
        self._ttl = lease_ttl if lease_ttl is not None else 5 * reconcile_interval
        self._campaign = Campaign(
            registry,
            machine_id,
            version,
            self._ttl,
            engine_version=engine_version,
            interval=reconcile_interval,
            clock=self._clock,
            on_store_failure=self._note_store_failure,
        )
        self._plan = planner
        self._view = ClusterState()
        self._drains = DrainCoordinator()
        self._wake = asyncio.Event()
        self._leadership: Leadership | None = None
        self._leader_since: float | None = None
        self._elections_won = 0
        self._passes = 0
        self._placements = 0
        self._removals = 0
        self._rewrites = 0
        self._reasons_written = 0
        self._failures = 0
        self._relists = 0
        self._bodies_collected = 0
        self._last_pass = 0.0
        self._pending_since: dict[tuple[str, str], float] = {}
        # B7: after this engine saw etcd fail, a machine that is absent may only
        # have lost its presence to the outage; its units stay put for
        # ``machine_grace`` seconds after etcd answers again, time for its agent
        # to register again. A healthy engine still reacts to an expiry at once.
        # Armed only by trouble that can have cost agents their presence: seen
        # while leading (``_store_failed``, cleared by the relist that arms it) or
        # seen as a standby no longer ago than the grace itself (a standby that saw
        # one failed request long ago must not delay a real failover).
        self._machine_grace = machine_grace
        self._store_failed = False
        self._last_failure: float | None = None
        self._shield_until = 0.0

    # --- public -------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leadership is not None and not self._leadership.lost

    @property
    def current_leadership(self) -> Leadership | None:
        """The held leadership, if any (for diagnostics and tests)."""
        return self._leadership

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(
            leader=self.is_leader,
            leader_since=self._leader_since,
            elections_won=self._elections_won,
            passes=self._passes,
            placements=self._placements,
            removals=self._removals,
            rewrites=self._rewrites,
            reasons_written=self._reasons_written,
            failures=self._failures,
            relists=self._relists,
            bodies_collected=self._bodies_collected,
            last_pass_seconds=self._last_pass,
            units=len(self._view.jobs),
            machines=len(self._view.machines),
        )

    async def run(self) -> None:
        """Campaign, lead until leadership is lost, campaign again; until cancelled."""
        try:
            while True:
                leadership = await self._campaign.win()
                self._leadership = leadership
                self._store_failed = False
                self._leader_since = self._clock.time()
                self._elections_won += 1
                if self._metrics is not None:
                    self._metrics.engine_became_leader(self._leader_since)
                    self._metrics.engine_leading(True)
                log.info("engine: %s is now the leader", self._machine_id)
                try:
                    await self._lead(leadership)
                except NotLeader as exc:
                    log.warning("engine: leadership lost: %s", exc)
                    # Usually etcd trouble (the lease was not refreshed in time);
                    # it arms the grace of a next term only while it is recent.
                    self._note_store_failure()
                finally:
                    # Resign before anything else (also when cancelled: a stopping
                    # fleetd hands over at once instead of when its lease expires).
                    await self._resign()
                    self._drop_view()
                    self._leader_since = None
                    if self._metrics is not None:
                        self._metrics.engine_leading(False)
        finally:
            await self._resign()

    # --- leadership ---------------------------------------------------------------

    def _note_store_failure(self) -> None:
        """A registry failure seen while not leading (campaign, standby watch)."""
        self._last_failure = self._clock.monotonic()

    async def _resign(self) -> None:
        leadership, self._leadership = self._leadership, None
        await self._campaign.resign(leadership)

    @staticmethod
    async def _until_lost(leadership: Leadership) -> None:
        """Raise NotLeader the moment the leadership is lost (ends a lead's tasks)."""
        reason = await leadership.wait_lost()
        raise NotLeader(f"engine leadership lost: {reason}")

    async def _sleep_unless_lost(self, leadership: Leadership, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(seconds):
                await leadership.wait_lost()

    def _drop_view(self) -> None:
        self._swept = None
        self._view = ClusterState()
        self._machine_watch = MachineWatch()
        self._drains.reset()
        self._pending_since.clear()

    # --- leading ------------------------------------------------------------------

    async def _lead(self, leadership: Leadership) -> None:
        while not leadership.lost:
            try:
                revisions = await self._relist()
            except StoreError as exc:
                self._failures += 1
                self._store_failed = True
                log.warning("engine: relist failed, retrying: %s", exc)
                await self._sleep_unless_lost(leadership, self._interval)
                continue
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._until_lost(leadership))
                    if self._watches:
                        for topic, revision in revisions.items():
                            group.create_task(self._watch(topic, revision))
                    else:
                        group.create_task(self._relist_after(self._interval))
                    group.create_task(self._reconcile_loop(leadership))
            except* _Relist:
                self._relists += 1
                log.info("engine: relisting the registry")
            except* NotLeader as group_error:
                raise group_error.exceptions[0] from None
        raise NotLeader("engine leadership lease lost")

    async def _relist(self) -> dict[Topic, int]:
        """Load every watched topic and the reasons; -> topic -> listed revision."""
        self._pending_since.clear()
        view = self._view
        revisions: dict[Topic, int] = {}
        for topic in WATCHED:
            listing, revision = await self._registry.list_changes(Scope(topic))
            view.load(topic, listing)
            revisions[topic] = revision
        reasons, _ = await self._registry.list_changes(Scope(Topic.REASONS))
        now = self._clock.monotonic()
        shield_until = 0.0
        if self._store_failed:
            shield_until = now + self._machine_grace
        elif self._last_failure is not None:
            shield_until = self._last_failure + self._machine_grace
        self._store_failed = False
        self._last_failure = None
        if shield_until > now:
            self._shield_until = shield_until
            if self._machine_grace > 0:
                log.info(
                    "engine: after etcd trouble, absent machines keep their units for %gs",
                    shield_until - now,
                )
        view.load_reasons(
            {c.name: c.reason for c in reasons if isinstance(c, ReasonChanged) and c.reason}
        )
        self._wake.set()
        return revisions

    async def _relist_after(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
        raise _Relist

    async def _watch(self, topic: Topic, revision: int) -> None:
        stream = self._registry.watch(Scope(topic), revision + 1)
        try:
            async with contextlib.aclosing(stream):
                async for batch in stream:
                    if self._view.apply(batch):
                        self._wake.set()
        except StoreCompacted as exc:
            log.warning("engine: watch of %s compacted: %s", topic, exc)
            raise _Relist from exc
        except StoreError as exc:
            # The registry already retries an unreachable etcd; anything else means
            # the view may have missed events.
            self._store_failed = True
            log.warning("engine: watch of %s failed: %s", topic, exc)
            raise _Relist from exc

    async def _reconcile_loop(self, leadership: Leadership) -> None:
        # Runs beside _until_lost, which ends it when leadership is lost.
        while True:
            if await self._wait_wake():
                # Coalesce a burst of events into one pass.
                await self._clock.sleep(DEBOUNCE)
            self._wake.clear()
            await self._pass(leadership)
            await self._sweep_lost()
            if self._passes % GC_EVERY_PASSES == 0 and not self._wake.is_set():
                await self._collect_garbage()
            if self._events is not None and self._passes % TRIM_EVERY_PASSES == 0:
                await self._trim_events()

    async def _trim_events(self) -> None:
        try:
            trimmed = await self._registry.trim_events()
        except StoreError as exc:
            log.warning("engine: trimming events failed: %s", exc)
            return
        if trimmed:
            log.debug("engine: trimmed %d old events", trimmed)

    async def _sweep_lost(self) -> None:
        """Record when machines went missing (and forget long-lost ones): at the start of
        a term, whenever the set of machines changed, and with every GC."""
        present = frozenset(self._view.machines)
        if present == self._swept and self._passes % GC_EVERY_PASSES != 0:
            return
        try:
            await self._registry.sweep_lost_machines(
                present, self._clock.time(), self._lost_retention
            )
        except StoreError as exc:
            log.warning("engine: cannot record lost machines: %s", exc)
            return
        self._swept = present

    async def _collect_garbage(self) -> None:
        try:
            collected = await self._registry.collect_garbage()
        except StoreError as exc:
            log.warning("engine: unit body garbage collection failed: %s", exc)
            return
        if collected:
            self._bodies_collected += collected
            log.info("engine: removed %d unreferenced unit bodies", collected)

    async def _wait_wake(self) -> bool:
        """Wait for a relevant change (True) or the interval (False); while a drain
        is under way the interval is the drain tick."""
        interval = self._interval
        if self._drains.under_way(self._view):
            interval = min(interval, DRAIN_TICK)
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(interval):
                await self._wake.wait()
                return True
        return False

    async def _pass(self, leadership: Leadership) -> None:
        started = self._clock.monotonic()
        failed = True
        try:
            await self._pass_inner(leadership, started)
            failed = False
        finally:
            if self._metrics is not None:
                self._metrics.engine_reconcile(self._clock.monotonic() - started, failed=failed)

    async def _pass_inner(self, leadership: Leadership, started: float) -> None:
        view = self._view
        self._expire_pending()
        cut = view.cut(self._shielded_machines())
        snapshot, result, drains = await self._drain_step(cut.snapshot)
        if result is None:
            if len(snapshot.units) > THREAD_THRESHOLD:
                result = await asyncio.to_thread(self._plan, snapshot)
            else:
                result = self._plan(snapshot)
        if view is not self._view:
            return  # relisted while planning: this plan is stale
        writes = view.writes(cut, result, drains)
        events = self._pass_events(cut.removals, result, writes)
        self._passes += 1
        if self._metrics is not None:
            self._record_view(len(set(result.unplaceable) | set(cut.held)))
        if writes or events:
            self._log_plan(writes, result)
            view.expect(writes)
            now = self._clock.monotonic()
            for change in writes.changes:
                self._pending_since[(change.machine_id, change.name)] = now
            try:
                await self._registry.apply_schedule(
                    leadership, writes.changes, writes.reasons, writes.drains, events
                )
            except NotLeader:
                self._failures += 1
                self._record_failed_tasks(writes)
                raise
            except StoreUnavailable as exc:
                # Some batches may have landed: the view cannot know which (B7).
                self._failures += 1
                self._record_failed_tasks(writes)
                self._store_failed = True
                log.warning("engine: etcd unavailable, nothing applied this pass: %s", exc)
                await self._wait_store(leadership)
                raise _Relist from exc
            except StoreError as exc:
                self._failures += 1
                self._record_failed_tasks(writes)
                log.error("engine: applying the schedule failed: %s", exc)
                raise _Relist from exc
            view.written(writes)
            self._placements += writes.placed
            self._removals += writes.removed
            self._rewrites += writes.rewritten
            if self._metrics is not None:
                for task, count in (
                    ("place", writes.placed),
                    ("unschedule", writes.removed),
                    ("rewrite", writes.rewritten),
                ):
                    self._metrics.engine_tasks(task, count)
            self._reasons_written += len(writes.reasons)
        self._last_pass = self._clock.monotonic() - started

    def _record_view(self, unplaceable: int) -> None:
        assert self._metrics is not None
        view = self._view
        by_desired: dict[str, int] = {}
        for job in view.jobs.values():
            by_desired[job.desired_state.value] = by_desired.get(job.desired_state.value, 0) + 1
        self._metrics.engine_view(by_desired, unplaceable, len(view.machines), len(view.pending))

    def _record_failed_tasks(self, writes: PassWrites) -> None:
        """Every task of a pass whose write failed counts as failed (how many of its
        batches landed is unknown: the next pass rewrites what is missing)."""
        if self._metrics is None:
            return
        for task, count in (
            ("place", writes.placed),
            ("unschedule", writes.removed),
            ("rewrite", writes.rewritten),
        ):
            self._metrics.engine_tasks_failed(task, count)

    def _pass_events(
        self, removals: tuple[ScheduleChange, ...], result: Plan, writes: PassWrites
    ) -> list[Event]:
        """This pass's events: machines first, then the units' (B13)."""
        if self._events is None:
            return []
        view, now = self._view, self._clock.time()
        cordons = {m: c.reason for m, c in view.cordons.items()}
        holding = {m for entries in view.schedule.values() for m in entries}
        events = self._machine_watch.observe(self._events, now, view.machines, cordons, holding)
        decisions = [Decision(c.name, c.machine_id, False, "scheduled twice") for c in removals]
        decisions += [
            Decision(u.name, u.machine_id, False, u.reason.text(u.detail))
            for u in result.unschedule
        ]
        decisions += [
            Decision(p.name, p.machine_id, True, p.reason.text(p.detail)) for p in result.place
        ]
        unplaceable = {}
        for name, why in writes.reasons.items():
            before = view.reasons.get(name)
            if why is not None and (before is None or before.text != why.text):
                unplaceable[name] = why.text
        events += schedule_events(self._events, now, decisions, unplaceable)
        return events

    async def _drain_step(
        self, snapshot: Snapshot
    ) -> tuple[Snapshot, Plan | None, dict[str, DrainStatus]]:
        """Step the drains under way: the snapshot with their evictions, the plan if
        the step made it already, and the drain progress to write."""
        work = self._drains.under_way(self._view)
        if not work:
            return snapshot, None, {}
        try:
            states = await self._registry.list_unit_states_of(self._drains.in_flight(work))
        except StoreError as exc:
            log.warning("engine: cannot read the states of units being drained: %s", exc)
            return snapshot, None, {}
        step, statuses = self._drains.step(work, snapshot, states, self._clock.time(), self._plan)
        for machine_id, status in statuses.items():
            log.info("engine: drain of %s: %s (%s)", machine_id, status.phase, status.detail)
        if not step.evict and not step.hold:
            return snapshot, None, statuses
        return replace(snapshot, evict=step.evict, hold=frozenset(step.hold)), None, statuses

    async def _wait_store(self, leadership: Leadership) -> None:
        """Back off until etcd answers again (or leadership is lost)."""
        while not leadership.lost:
            await self._sleep_unless_lost(leadership, self._interval)
            try:
                await self._registry.list_changes(Scope(Topic.LEADER))
                return
            except StoreError:
                continue

    def _shielded_machines(self) -> frozenset[str]:
        """Absent machines still holding units, while the post-outage grace runs."""
        if self._clock.monotonic() >= self._shield_until:
            return frozenset()
        view = self._view
        present = view.machines.keys()
        return frozenset(
            m for entries in view.schedule.values() for m in entries if m not in present
        )

    def _expire_pending(self) -> None:
        if not self._pending_since:
            return
        now = self._clock.monotonic()
        expired = [k for k, t in self._pending_since.items() if now - t > PENDING_TTL]
        for key in expired:
            del self._pending_since[key]
            self._view.pending.pop(key, None)

    def _log_plan(self, writes: PassWrites, result: Plan) -> None:
        if log.isEnabledFor(logging.INFO):
            for u in result.unschedule:
                log.info("engine: unscheduling %s from %s: %s", u.name, u.machine_id, u.detail)
            if len(result.place) <= 50:
                for p in result.place:
                    log.info("engine: scheduling %s to %s: %s", p.name, p.machine_id, p.detail)
            else:
                log.info("engine: scheduling %d units", len(result.place))
            for name, why in writes.reasons.items():
                if why is not None:
                    log.info("engine: cannot place %s: %s", name, why.text)
        log.debug(
            "engine: pass writes %d placements, %d removals, %d rewrites, %d reasons",
            writes.placed,
            writes.removed,
            writes.rewritten,
            len(writes.reasons),
        )
