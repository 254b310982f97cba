"""Blocking until units reach a state: fleet's ``--block-attempts`` / ``--no-block``.

An attempt is :data:`ATTEMPT_SECONDS` of polling every :data:`POLL_SECONDS`
through the :class:`~fleetctl.client.FleetClient` (``0`` attempts waits
forever). All units of one command are waited for together, so N units cost
one poll loop, not N. Every wait ends on every outcome: the state is reached;
the engine says the unit cannot be placed (feature B1, exit 2) instead of
hanging the way fleet did (#1334); the unit failed where it was placed (exit 1,
naming the machine and systemd's Result); after a start, the unit ran and
exited successfully (said so, exit 0); or the attempts ran out (the last state
seen is named). docs/cli.md has the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.outcome import Outcome, launch_outcome
from fleet.errors import Timeout, UnitFailed, Unplaceable
from fleetctl.render import Legend, state_reached_line

if TYPE_CHECKING:
    from fleet.core.views import UnitInfo
    from fleet.ports import Clock
    from fleetctl.client import FleetClient
    from fleetctl.progress import LiveRows

# names, title -> a live view of those units, or None (not a terminal, one unit).
LiveFactory = Callable[[Sequence[str], str], "LiveRows | None"]
DONE, FAILED, WAITING = "done", "failed", "waiting"  # as fleetctl.progress says them

T = TypeVar("T")

POLL_SECONDS = 0.25
ATTEMPT_SECONDS = 2.0
NO_BLOCK = -1


def block_attempts(attempts: int, no_block: bool) -> int:
    """fleet's getBlockAttempts: -1 = do not wait, 0 = forever, N = N attempts."""
    if no_block:
        return NO_BLOCK
    return max(attempts, 0)


def _timed_out(names: Sequence[str], what: str, last_seen: str = "") -> Timeout:
    seen = f" (last seen: {last_seen})" if last_seen else ""
    if len(names) == 1:
        return Timeout(f"timed out waiting for unit {names[0]} to report state {what}{seen}")
    return Timeout(f"timed out waiting for units {', '.join(names)} to report state {what}{seen}")


def _describe_info(info: UnitInfo) -> str:
    state = str(info.desired if info.is_global else info.current)
    return state if info.machine_id or info.is_global else f"{state}, not scheduled"


def _describe_state(state: UnitState) -> str:
    return f"{state.active_state}/{state.sub_state}"


def _seen(names: Sequence[str], last: Mapping[str, T], describe: Callable[[T], str]) -> str:
    """What the units waited for last looked like (just the state for one unit)."""
    known = [n for n in names if n in last]
    if len(names) == 1:
        return describe(last[names[0]]) if known else ""
    return "; ".join(f"{n}: {describe(last[n])}" for n in known)


def _failed_line(name: str, where: str, why: str) -> str:
    return (
        f"Unit {name} failed on {where}: {why} "
        f"(see fleetctl status {name}; fleetctl journal {name})"
    )


@dataclass
class Waiter:
    """Polls one client on one clock; remembers live machines for the legends."""

    client: FleetClient
    clock: Clock
    echo: Callable[[str], None]
    machines: dict[str, Machine] = field(default_factory=dict)
    live: LiveFactory | None = None
    _machines_read: bool = False

    def _deadline(self, attempts: int) -> float | None:
        return None if attempts == 0 else self.clock.monotonic() + attempts * ATTEMPT_SECONDS

    async def _pause(self, deadline: float | None) -> bool:
        """Sleep one poll period; False once the deadline has passed."""
        if deadline is not None and self.clock.monotonic() >= deadline:
            return False
        await self.clock.sleep(POLL_SECONDS)
        return True

    async def legend(self, machine_id: str | None) -> Legend:
        # Like fleet's cachedMachineState: one machine list per invocation,
        # read again only for a machine we have not seen yet.
        if machine_id and (not self._machines_read or machine_id not in self.machines):
            self.machines = {machine.id: machine for machine in await self.client.list_machines()}
            self._machines_read = True
        return Legend(self.machines)

    async def wait_unit_states(
        self, names: Sequence[str], target: DesiredState, attempts: int
    ) -> None:
        """Wait until every unit's state is ``target``; print fleet's line for each.

        Global units have no current state: their desired state is what counts.
        """
        pending = list(dict.fromkeys(names))
        rows = self.live(pending, f"Waiting for {target}") if self.live else None
        try:
            await self._wait_unit_states(pending, target, attempts, rows)
        finally:
            if rows is not None:
                rows.close()

    async def _machine_text(self, machine_id: str | None) -> str:
        return (await self.legend(machine_id)).machine(machine_id) if machine_id else ""

    async def _wait_unit_states(
        self, pending: list[str], target: DesiredState, attempts: int, rows: LiveRows | None
    ) -> None:
        deadline = self._deadline(attempts)
        last: dict[str, UnitInfo] = {}
        while pending:
            infos = {info.name: info for info in await self.client.list_units()}
            failures: list[str] = []
            for name in list(pending):
                info = infos.get(name)
                if info is None:
                    continue
                last[name] = info
                state = info.desired if info.is_global else info.current
                where = await self._machine_text(info.machine_id) if rows is not None else ""
                if state == target:
                    if rows is None:
                        self.echo(state_reached_line(info, await self.legend(info.machine_id)))
                    else:
                        rows.update(name, str(state), where, DONE)
                    pending.remove(name)
                elif target is DesiredState.INACTIVE:
                    if rows is not None:
                        rows.update(name, _describe_info(info), where)
                elif info.reason:
                    if rows is not None:
                        rows.update(name, f"cannot be placed: {info.reason}", where, FAILED)
                    raise Unplaceable(f"Unit {name} cannot be placed: {info.reason}")
                elif info.failure:
                    failures.append(f"Unit {name} {info.failure}")
                    if rows is not None:
                        rows.update(name, info.failure, where, FAILED)
                    pending.remove(name)
                elif rows is not None:
                    rows.update(name, _describe_info(info), where)
            if rows is not None:
                rows.refresh()
            if failures:
                raise UnitFailed("\n".join(failures))
            if pending and not await self._pause(deadline):
                raise _timed_out(pending, str(target), _seen(pending, last, _describe_info))

    async def wait_launch_outcomes(self, infos: Sequence[UnitInfo], attempts: int) -> None:
        """After ``launched``: wait for systemd's verdict on each unit's machine.
        Running is success; a unit that ran and exited successfully is success,
        said so; failures end the wait with one line per unit (UnitFailed)."""
        pending = {info.name: info.machine_id for info in infos}
        rows = self.live(list(pending), "Waiting for systemd") if self.live else None
        try:
            await self._wait_launch_outcomes(pending, attempts, rows)
        finally:
            if rows is not None:
                rows.close()

    async def _wait_launch_outcomes(
        self, pending: dict[str, str | None], attempts: int, rows: LiveRows | None
    ) -> None:
        deadline = self._deadline(attempts)
        last: dict[str, UnitState] = {}
        failures: list[str] = []
        while pending:
            for state in await self.client.list_unit_states():
                if pending.get(state.name) != state.machine_id:
                    continue
                last[state.name] = state
                verdict = launch_outcome(state)
                waiting = verdict.outcome is Outcome.WAITING or (
                    verdict.outcome is Outcome.RUNNING and state.load_state != "loaded"
                )
                if waiting:
                    if rows is not None:
                        where = await self._machine_text(state.machine_id)
                        rows.update(state.name, _describe_state(state), where)
                    continue
                del pending[state.name]
                where = (await self.legend(state.machine_id)).machine(state.machine_id)
                if verdict.outcome is Outcome.EXITED:
                    if rows is None:
                        self.echo(f"Unit {state.name} ran and exited successfully on {where}")
                    else:
                        rows.update(state.name, "ran and exited successfully", where, DONE)
                elif verdict.outcome is Outcome.FAILED:
                    failures.append(_failed_line(state.name, where, verdict.detail))
                    if rows is not None:
                        rows.update(state.name, f"failed: {verdict.detail}", where, FAILED)
                elif rows is not None:
                    rows.update(state.name, _describe_state(state), where, DONE)
            if rows is not None:
                rows.refresh()
            if pending and not await self._pause(deadline):
                timeout = _timed_out(
                    sorted(pending), "active", _seen(sorted(pending), last, _describe_state)
                )
                if not failures:
                    raise timeout
                failures.append(str(timeout))
                break
        if failures:
            raise UnitFailed("\n".join(failures))

    async def wait_destroyed(self, names: Sequence[str], attempts: int) -> None:
        """Until the unit is gone from the registry and no agent reports it any more."""
        pending = set(names)
        deadline = self._deadline(attempts)
        while pending:
            present = {info.name for info in await self.client.list_units()}
            present.update(state.name for state in await self.client.list_unit_states())
            pending &= present
            if pending and not await self._pause(deadline):
                ordered = sorted(pending)
                raise Timeout(
                    f"timed out waiting for unit{'s' if len(ordered) > 1 else ''} "
                    f"{', '.join(ordered)} to be destroyed"
                )
