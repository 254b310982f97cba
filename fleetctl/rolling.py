"""Rolling runs: units (or a global unit's machines) moved N at a time, each judged healthy.

fleetctl orders the steps; the cluster is only asked to do what ``start
--replace`` and ``restart`` already ask of it, through the one client. A
:class:`Step` is one unit to replace or restart, or one machine of a global
unit to restart. Steps go in batches of ``max_parallel``; a batch's writes
are all made (nothing is left half-written), then every step of it is waited
for: **healthy** means fleet's current state ``launched`` on a machine and
systemd ``active`` there, staying so on that machine for ``min_healthy``
seconds, all within ``healthy_timeout``. A launch that fails, a unit that
leaves ``active`` or moves during the stable window, or the deadline, is a
failure. Then :class:`OnFailure` decides: stop (``pause``), go on
(``continue``) or put back the previous content of every unit the run changed
(``rollback``). Ctrl-C (:attr:`Roller.stop`) ends the run after the current
batch's writes: a unit in flight keeps its new desired state and is reported
as not judged.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fleet.core.model import DesiredState
from fleet.core.outcome import Outcome, launch_outcome
from fleet.errors import FleetError
from fleetctl.waiting import ATTEMPT_SECONDS, POLL_SECONDS, Waiter

if TYPE_CHECKING:
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleet.ports import Clock
    from fleetctl.client import FleetClient


class OnFailure(StrEnum):
    PAUSE = "pause"
    CONTINUE = "continue"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class RollSettings:
    max_parallel: int = 1
    min_healthy: float = 5.0
    healthy_timeout: float = 120.0
    on_failure: OnFailure = OnFailure.PAUSE


@dataclass
class Step:
    """One thing to move. ``new`` is the content to submit (replace), None to restart;
    ``old`` the registry unit before the run (None: the run creates it);
    ``machine_id`` set only for one machine of a global unit."""

    name: str
    old: UnitInfo | None = None
    new: UnitFile | None = None
    machine_id: str | None = None
    done: str = ""  # "": not touched; "ok", "failed", "interrupted", "rolled back"
    detail: str = ""
    failed: bool = False  # kept when a rollback changes ``done``

    @property
    def label(self) -> str:
        return f"{self.name} on {self.machine_id[:8]}..." if self.machine_id else self.name


class Unhealthy(Exception):
    """A step that did not become healthy; the message says why."""


Restart = Callable[[Step], Awaitable[None]]
"""Restarts one machine's copy of a global unit (systemctl over SSH); raises Unhealthy."""


@dataclass
class Roller:
    client: FleetClient
    clock: Clock
    echo: Callable[[str], None]
    warn: Callable[[str], None]
    settings: RollSettings
    restart_on_machine: Restart | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False

    def _waiter(self) -> Waiter:
        return Waiter(self.client, self.clock, lambda _line: None)

    def _attempts(self, deadline: float) -> int:
        left = deadline - self.clock.monotonic()
        return max(1, math.ceil(left / ATTEMPT_SECONDS))

    async def _where(self, machine_id: str) -> str:
        return (await self._waiter().legend(machine_id)).machine(machine_id)

    # -- writes (never raced with Ctrl-C: a batch is never left half-written) ----------

    async def _submit(self, name: str, unit: UnitFile, desired: DesiredState) -> None:
        """``start --replace``'s write: the new file inactive, then ``desired``."""
        await self.client.replace_unit(name, unit, DesiredState.INACTIVE)
        attempts = self._attempts(self.clock.monotonic() + self.settings.healthy_timeout)
        await self._waiter().wait_unit_states([name], DesiredState.INACTIVE, attempts)
        if desired is not DesiredState.INACTIVE:
            await self.client.set_desired_state(name, desired)

    async def _write(self, step: Step) -> None:
        if step.new is not None:
            await self._submit(step.name, step.new, DesiredState.LAUNCHED)
        elif step.machine_id is None:
            # restart's steps: launched -> loaded (kept on its machine) -> launched.
            info = await self.client.get_unit(step.name)
            if info is not None and info.current is DesiredState.LAUNCHED:
                await self.client.set_desired_state(step.name, DesiredState.LOADED)
                attempts = self._attempts(self.clock.monotonic() + self.settings.healthy_timeout)
                await self._waiter().wait_unit_states([step.name], DesiredState.LOADED, attempts)
            await self.client.set_desired_state(step.name, DesiredState.LAUNCHED)

    # -- health ---------------------------------------------------------------------

    async def _launched_on(self, name: str, deadline: float, want_hash: str) -> str:
        """Wait for fleet's ``launched``; the machine. Without a content to look for,
        also for systemd's first verdict (with one, :meth:`_stable` judges only the
        states of that content: the one left by the previous content is stale)."""
        waiter = self._waiter()
        try:
            await waiter.wait_unit_states([name], DesiredState.LAUNCHED, self._attempts(deadline))
            info = await self.client.get_unit(name)
            if info is None or not info.machine_id:
                raise Unhealthy("no longer scheduled")
            if not want_hash:
                await waiter.wait_launch_outcomes([info], self._attempts(deadline))
        except FleetError as exc:
            raise Unhealthy(str(exc).splitlines()[0]) from exc
        return info.machine_id

    async def _active_now(
        self, name: str, machine_id: str, global_unit: bool, want_hash: str
    ) -> tuple[str | None, bool]:
        """(None, _) if ``name`` is active on ``machine_id`` now, else (what it is
        instead, whether that is final: failed, moved or gone)."""
        if not global_unit:
            info = await self.client.get_unit(name)
            if info is None:
                return "destroyed", True
            if info.machine_id != machine_id:
                return f"moved to {info.machine_id or 'no machine'}", True
            if info.current is not DesiredState.LAUNCHED:
                return f"fleet state {info.current}", False
        states = await self.client.list_unit_states(machine_id=machine_id, unit_name=name)
        if not states:
            return "no state reported", False
        state = states[0]
        if want_hash and state.hash != want_hash:
            return "still running the previous content", False
        verdict = launch_outcome(state)
        if verdict.outcome is not Outcome.RUNNING:
            seen = f"{state.active_state}/{state.sub_state}"
            return f"{seen} ({verdict.detail})", verdict.outcome is Outcome.FAILED
        return None, False

    async def _stable(
        self, name: str, machine_id: str, deadline: float, global_unit: bool, want_hash: str = ""
    ) -> None:
        """Active on ``machine_id`` (by ``deadline``), then for ``min_healthy`` throughout."""
        since: float | None = None
        while True:
            now = self.clock.monotonic()
            problem, final = await self._active_now(name, machine_id, global_unit, want_hash)
            if problem is None:
                since = now if since is None else since
                if now - since >= self.settings.min_healthy:
                    return
            elif since is not None:
                raise Unhealthy(f"left active after {now - since:.1f}s: {problem}")
            elif final:
                raise Unhealthy(problem)
            elif now >= deadline:
                raise Unhealthy(
                    f"not healthy within {self.settings.healthy_timeout:g}s (last seen: {problem})"
                )
            await self.clock.sleep(POLL_SECONDS)

    async def _healthy(self, step: Step) -> str:
        """Wait until ``step`` is healthy; where it runs. Unhealthy otherwise."""
        deadline = self.clock.monotonic() + self.settings.healthy_timeout
        if step.machine_id is not None:
            assert self.restart_on_machine is not None
            await self.restart_on_machine(step)
            await self._stable(step.name, step.machine_id, deadline, global_unit=True)
            return step.machine_id
        want = step.new.hash if step.new is not None else ""
        machine_id = await self._launched_on(step.name, deadline, want)
        await self._stable(step.name, machine_id, deadline, global_unit=False, want_hash=want)
        return machine_id

    async def _judge(self, step: Step, verb: str) -> None:
        try:
            machine_id = await self._healthy(step)
        except Unhealthy as exc:
            step.done, step.detail, step.failed = "failed", str(exc), True
            self.warn(f"{step.label}: {verb}, FAILED: {exc}")
            return
        step.done = "ok"
        self.echo(f"{step.label}: {verb}, healthy on {await self._where(machine_id)}")

    async def _judge_batch(self, batch: Sequence[Step], verb: str) -> None:
        """Judge every step of ``batch`` together; Ctrl-C ends the wait (steps unjudged)."""
        judging: asyncio.Future[list[None]] = asyncio.gather(
            *(self._judge(step, verb) for step in batch)
        )
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        try:
            pending: list[asyncio.Future[Any]] = [judging, stopping]
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not judging.done():
            judging.cancel()
            await asyncio.gather(judging, return_exceptions=True)
            self.interrupted = True
            for step in batch:
                if not step.done:
                    step.done = "interrupted"
        elif not judging.cancelled():
            judging.result()  # an error no step could judge (the store went away) propagates

    # -- the run ------------------------------------------------------------------------

    async def run(self, steps: Sequence[Step], verb: str) -> bool:
        """Every step, N at a time; True if all became healthy (and none was interrupted)."""
        size = max(1, self.settings.max_parallel)
        for first in range(0, len(steps), size):
            if self.stop.is_set():
                self.interrupted = True
                break
            batch = steps[first : first + size]
            for step in batch:
                try:
                    await self._write(step)
                except FleetError as exc:
                    step.done, step.detail, step.failed = "failed", str(exc).splitlines()[0], True
                    self.warn(f"{step.label}: {verb}, FAILED: {step.detail}")
            await self._judge_batch([s for s in batch if not s.done], verb)
            if self.interrupted:
                break
            failing = any(s.done == "failed" for s in batch)
            if failing and self.settings.on_failure is not OnFailure.CONTINUE:
                break
        failed = any(step.done == "failed" for step in steps)
        if failed and self.settings.on_failure is OnFailure.ROLLBACK and not self.interrupted:
            await self.rollback(steps)
        return not failed and not self.interrupted

    async def rollback(self, steps: Sequence[Step]) -> None:
        """Put back the previous content (and desired state) of every unit this run
        changed, the failed ones first, N at a time; a unit the run created is destroyed."""
        changed = [s for s in steps if s.done in ("ok", "failed", "interrupted") and s.new]
        changed.sort(key=lambda s: s.done != "failed")
        size = max(1, self.settings.max_parallel)
        self.echo(f"Rolling back {len(changed)} unit(s) to their previous content")
        for first in range(0, len(changed), size):
            batch = changed[first : first + size]
            relaunch: list[Step] = []
            for step in batch:
                if step.old is None:
                    await self.client.destroy_unit(step.name)
                    step.done = "rolled back"
                    self.echo(f"{step.name}: destroyed (it did not exist before)")
                    continue
                await self._submit(step.name, step.old.unit, step.old.desired)
                if step.old.desired is DesiredState.LAUNCHED:
                    relaunch.append(step)
                else:
                    step.done = "rolled back"
                    self.echo(f"{step.name}: previous content restored ({step.old.desired})")
            await asyncio.gather(*(self._rolled_back(step) for step in relaunch))

    async def _rolled_back(self, step: Step) -> None:
        assert step.old is not None
        try:
            # Judged like a replace whose new content is the old one.
            machine_id = await self._healthy(Step(step.name, new=step.old.unit))
        except Unhealthy as exc:
            step.done, step.detail = "rollback failed", str(exc)
            self.warn(f"{step.name}: previous content, FAILED: {exc}")
            return
        step.done = "rolled back"
        where = await self._where(machine_id)
        self.echo(f"{step.name}: previous content restored, healthy on {where}")


def summary(steps: Sequence[Step], replacing: bool) -> list[str]:
    """Which units run new content, which old, which failed (one line each, non-empty)."""
    groups: dict[str, list[str]] = {}

    def add(group: str, step: Step) -> None:
        groups.setdefault(group, []).append(step.label)

    for step in steps:
        if step.done in ("ok", "failed", "interrupted") and replacing and step.new is None:
            add("unchanged content, started", step)
        elif step.done in ("ok", "failed", "interrupted"):
            add("new content" if replacing else "restarted", step)
        elif step.done == "rolled back":
            add("old content (rolled back)", step)
        elif step.done == "rollback failed":
            add("old content, rollback FAILED", step)
        else:
            add("old content" if replacing else "not restarted", step)
        if step.failed:
            add("failed", step)
        if step.done == "interrupted":
            add("not judged (interrupted)", step)
    return [f"{group}: {', '.join(names)}" for group, names in groups.items()]
