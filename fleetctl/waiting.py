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
                if state == target:
                    self.echo(state_reached_line(info, await self.legend(info.machine_id)))
                    pending.remove(name)
                elif target is DesiredState.INACTIVE:
                    continue
                elif info.reason:
                    raise Unplaceable(f"Unit {name} cannot be placed: {info.reason}")
                elif info.failure:
                    failures.append(f"Unit {name} {info.failure}")
                    pending.remove(name)
            if failures:
                raise UnitFailed("\n".join(failures))
            if pending and not await self._pause(deadline):
                raise _timed_out(pending, str(target), _seen(pending, last, _describe_info))

    async def wait_launch_outcomes(self, infos: Sequence[UnitInfo], attempts: int) -> None:
        """After ``launched``: wait for systemd's verdict on each unit's machine.
        Running is success; a unit that ran and exited successfully is success,
        said so; failures end the wait with one line per unit (UnitFailed)."""
        pending = {info.name: info.machine_id for info in infos}
        deadline = self._deadline(attempts)
        last: dict[str, UnitState] = {}
        failures: list[str] = []
        while pending:
            for state in await self.client.list_unit_states():
                if pending.get(state.name) != state.machine_id:
                    continue
                last[state.name] = state
                verdict = launch_outcome(state)
                if verdict.outcome is Outcome.WAITING:
                    continue
                if verdict.outcome is Outcome.RUNNING and state.load_state != "loaded":
                    continue
                del pending[state.name]
                where = (await self.legend(state.machine_id)).machine(state.machine_id)
                if verdict.outcome is Outcome.EXITED:
                    self.echo(f"Unit {state.name} ran and exited successfully on {where}")
                elif verdict.outcome is Outcome.FAILED:
                    failures.append(_failed_line(state.name, where, verdict.detail))
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
