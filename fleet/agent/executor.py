"""The action executor: the only code that changes what this agent holds.

:class:`ActionExecutor` applies :class:`~fleet.core.agent_plan.AgentAction`
values to systemd and the units directory in the order the plan gives and
keeps ``current`` (each held unit's hash and whether it was loaded or
launched) in step with what succeeded. One unit's failure never holds back the
others: that unit's later actions wait, it is retried with growing pauses, and
its trouble is reported in its published state. The executor also remembers
the start job it queued for each unit, whose result tells a unit that ran and
exited from one that never ran. At start it adopts the unit files a previous
agent left (B8), so a unit systemd still runs counts as launched and is not
restarted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, assert_never

from fleet.agent.unitdir import UnitDirectory
from fleet.core.agent_plan import (
    ActionKind,
    AgentAction,
    CurrentUnit,
    DesiredUnit,
    apply_action,
)
from fleet.core.events import MAX_BUFFERED, Event, EventFactory, EventKind
from fleet.core.model import DesiredState
from fleet.core.unitfile import UnitFile
from fleet.errors import FleetError, StoreError, SystemdError, Timeout
from fleet.ports import NO_SUCH_UNIT, AgentStore, Clock, SystemdManager

if TYPE_CHECKING:
    from fleet.metrics import FleetMetrics

log = logging.getLogger(__name__)

# systemd active states in which a unit counts as started by us when adopted.
_RUNNING_STATES = frozenset({"active", "activating", "reloading"})
# A unit whose action failed is retried after retry_interval, doubling up to this.
MAX_BACKOFF = 60.0
# The event a successful action records (a start's waits for its job's result).
_DONE = {
    ActionKind.LOAD: EventKind.LOADED,
    ActionKind.STOP: EventKind.STOPPED,
    ActionKind.UNLOAD: EventKind.UNLOADED,
}


@dataclass(frozen=True, slots=True)
class Trouble:
    """The last failed action on one unit, and when the unit is tried again."""

    error: str
    hash: str  # the hash the unit was to have ("" if unknown)
    failures: int  # in a row
    retry_at: float  # on the executor's clock


class ActionExecutor:
    """Executes plans for one units directory. ``systemd_units_dir`` is that
    directory as the managed systemd sees it (it differs from ``units.path``
    only when the agent drives a container's systemd from outside)."""

    def __init__(
        self,
        store: AgentStore,
        systemd: SystemdManager,
        units: UnitDirectory,
        *,
        systemd_units_dir: Path,
        job_timeout: float,
        clock: Clock,
        retry_interval: float,
        on_error: Callable[[str], None],
        metrics: FleetMetrics | None = None,
        events: EventFactory | None = None,
        machine_id: str = "",
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.machine_id = machine_id
        # B13: what this agent did, waiting for the state publisher to write it.
        self.event_factory = events
        self.events: list[Event] = []
        self.start_seq: dict[str, int] = {}  # starts queued per unit (one event each)
        self.systemd = systemd
        self.units = units
        self.systemd_units_dir = systemd_units_dir
        self.job_timeout = job_timeout
        self.clock = clock
        self.retry_interval = retry_interval
        self.current: dict[str, CurrentUnit] = {}
        self.troubles: dict[str, Trouble] = {}
        # The start job queued for each launched unit, until its result is known
        # (start_results): a unit that ran and exited is not one that never ran.
        self.start_jobs: dict[str, str] = {}
        self.start_results: dict[str, str] = {}
        self._on_error = on_error

    async def adopt(self) -> None:
        """Take over the unit files a previous agent left: a unit systemd still
        runs counts as launched, so a matching schedule causes no action at all."""
        names = self.units.list()
        if not names:
            return
        states = await self.systemd.unit_states(names)
        for name in names:
            digest = self.units.hash_of(name)
            if digest is None:
                continue
            load, active, _sub = states.get(name, ("not-found", "inactive", "dead"))
            if load == "not-found":
                # A file systemd does not know (it lost its link): an empty hash
                # makes the plan unload or re-load it rather than trust it.
                digest = ""
            launched = active in _RUNNING_STATES
            state = DesiredState.LAUNCHED if launched else DesiredState.LOADED
            self.current[name] = CurrentUnit(digest, state)
            log.info("adopted unit %s (hash=%s, %s)", name, digest[:7], active)

    async def execute_plan(
        self, actions: Sequence[AgentAction], desired: Mapping[str, DesiredUnit]
    ) -> bool:
        """Run ``actions`` in order; True if every one ran and succeeded.

        A failed action (reported to ``on_error``) holds back only its unit's
        later actions; that unit is skipped until its retry time, which doubles
        with each failure in a row, while every other unit goes on."""
        now = self.clock.monotonic()
        waiting = {name for name, trouble in self.troubles.items() if trouble.retry_at > now}
        failed: set[str] = set()
        acted: set[str] = set()
        for action in actions:
            name = action.unit
            if name in waiting or name in failed:
                continue
            try:
                await self.execute(action, desired)
            except (FleetError, OSError) as exc:
                log.warning("AgentReconciler task failed: %s: %s", action, exc)
                if self.metrics is not None:
                    self.metrics.agent_action(action.kind.name.lower(), failed=True)
                self._on_error(f"{action}: {exc}")
                self._note(action, exc)
                if name:
                    failed.add(name)
                    self._trouble(name, action, exc, desired)
                continue
            apply_action(self.current, action, desired)
            self._note(action, None)
            acted.add(name)
            if self.metrics is not None:
                self.metrics.agent_action(action.kind.name.lower())
            log.info("AgentReconciler completed task: %s", action)
        for name in acted - failed:
            if self.troubles.pop(name, None) is not None:
                log.info("unit %s: its actions succeed again", name)
        for name in set(self.troubles) - set(desired) - set(self.current):
            del self.troubles[name]  # neither wanted nor held any more
        for name in set(self.start_seq) - set(desired) - set(self.current):
            del self.start_seq[name]
        return not failed and not (waiting & {a.unit for a in actions})

    def event(self, kind: EventKind, unit: str, message: str, result: str | None = None) -> None:
        """Queue an event about ``unit`` on this machine (oldest dropped beyond the cap)."""
        if self.event_factory is None:
            return
        self.events.append(
            self.event_factory.make(
                self.clock.time(),
                kind,
                unit=unit,
                machine=self.machine_id,
                message=message,
                result=result,
            )
        )
        if len(self.events) > MAX_BUFFERED:
            del self.events[: len(self.events) - MAX_BUFFERED]

    def _note(self, action: AgentAction, exc: Exception | None) -> None:
        if self.event_factory is None or not action.unit:
            return
        verb = action.kind.name.lower()
        if exc is not None:
            self.event(EventKind.FAILED, action.unit, f"{verb} failed: {exc}", "error")
            return
        done = _DONE.get(action.kind)
        if done is not None:
            self.event(done, action.unit, f"{done.value} by the agent ({action.reason})")

    def next_retry_in(self) -> float | None:
        """Seconds until the first unit held back by a failure may be tried again."""
        if not self.troubles:
            return None
        first = min(trouble.retry_at for trouble in self.troubles.values())
        return max(0.0, first - self.clock.monotonic())

    def _trouble(
        self, name: str, action: AgentAction, exc: Exception, desired: Mapping[str, DesiredUnit]
    ) -> None:
        previous = self.troubles.get(name)
        failures = previous.failures + 1 if previous is not None else 1
        pause = min(self.retry_interval * 2 ** (failures - 1), MAX_BACKOFF)
        wanted = desired.get(name)
        self.troubles[name] = Trouble(
            error=f"{action.kind.name.lower()} failed: {exc}",
            hash=wanted.hash if wanted is not None else "",
            failures=failures,
            retry_at=self.clock.monotonic() + pause,
        )

    async def start_results_now(self) -> Mapping[str, str]:
        """The result of each unit's last start job, for those that finished (one look,
        no wait): results that arrived since the last look are recorded first."""
        for name, job in list(self.start_jobs.items()):
            try:
                result = await self.systemd.wait_job(job, 0)
            except Timeout:
                continue
            except SystemdError as exc:
                log.info("unit %s: start job %s: %s", name, job, exc)
                result = "unknown"
            if self.start_jobs.get(name) == job:
                del self.start_jobs[name]
                self.start_results[name] = result
        return self.start_results

    async def execute(self, action: AgentAction, desired: Mapping[str, DesiredUnit]) -> None:
        name = action.unit
        match action.kind:
            case ActionKind.UNLOAD:
                self._forget_start(name)
                await self._unload(name)
            case ActionKind.LOAD:
                await self._load(name, desired[name].hash)
            case ActionKind.RELOAD:
                await self.systemd.reload()
            case ActionKind.STOP:
                self._forget_start(name)
                await self.systemd.stop_unit(name)
            case ActionKind.START:
                # Asynchronous like fleet: the job's outcome arrives as state
                # changes; its result is looked up when states are published.
                self._forget_start(name)
                self.start_jobs[name] = await self.systemd.start_unit(name)
                self.start_seq[name] = self.start_seq.get(name, 0) + 1
            case _:
                assert_never(action.kind)

    def _forget_start(self, name: str) -> None:
        self.start_jobs.pop(name, None)
        self.start_results.pop(name, None)

    async def _load(self, name: str, hash: str) -> None:
        body = await self.store.get_unit_body(hash)
        if body is None:
            raise StoreError(f"body {hash} of unit {name} is missing from the store")
        has_install = UnitFile.parse(body).has_install
        written = self.units.write(name, body)
        if written != hash:
            log.warning("unit %s: body hashes to %s, not %s", name, written[:7], hash[:7])
        path = str(self.systemd_units_dir / name)
        try:
            await self.systemd.link_unit_files([path], runtime=True, force=True)
            if has_install:
                await self.systemd.enable_unit_files([path], runtime=True, force=True)
        except SystemdError:
            self.units.remove(name)
            raise

    async def _unload(self, name: str) -> None:
        # Only a successful stop lets the unit go (fleet issue #1216): otherwise
        # the file stays and the next pass tries again.
        try:
            job = await self.systemd.stop_unit(name)
            await self.systemd.wait_job(job, self.job_timeout)
        except SystemdError as exc:
            if exc.dbus_name != NO_SUCH_UNIT:
                raise
        try:
            await self.systemd.disable_unit_files([name], runtime=True)
        except SystemdError as exc:
            log.info("unit %s: disable failed (ignored): %s", name, exc)
        with contextlib.suppress(SystemdError):
            await self.systemd.reset_failed_unit(name)
        self.units.remove(name)
