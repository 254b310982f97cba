"""Blocking until units reach a state: fleet's ``--block-attempts`` / ``--no-block``.

An attempt is :data:`ATTEMPT_SECONDS` of polling every :data:`POLL_SECONDS`
through the :class:`~fleetctl.client.FleetClient` (``0`` attempts waits
forever). All units of one command are waited for together, so N units cost
one poll loop, not N. While waiting for a unit to be placed, an engine verdict
that it cannot be placed ends the wait at once (feature B1) instead of hanging
the way fleet did (#1334).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleet.core.model import DesiredState, Machine
from fleet.errors import Timeout, Unplaceable
from fleetctl.render import Legend, state_reached_line

if TYPE_CHECKING:
    from fleet.core.views import UnitInfo
    from fleet.ports import Clock
    from fleetctl.client import FleetClient

POLL_SECONDS = 0.25
ATTEMPT_SECONDS = 2.0
NO_BLOCK = -1


def block_attempts(attempts: int, no_block: bool) -> int:
    """fleet's getBlockAttempts: -1 = do not wait, 0 = forever, N = N attempts."""
    if no_block:
        return NO_BLOCK
    return max(attempts, 0)


def _timed_out(names: Sequence[str], what: str) -> Timeout:
    if len(names) == 1:
        return Timeout(f"timed out waiting for unit {names[0]} to report state {what}")
    return Timeout(f"timed out waiting for units {', '.join(names)} to report state {what}")


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
        while pending:
            infos = {info.name: info for info in await self.client.list_units()}
            for name in list(pending):
                info = infos.get(name)
                if info is None:
                    continue
                state = info.desired if info.is_global else info.current
                if state == target:
                    self.echo(state_reached_line(info, await self.legend(info.machine_id)))
                    pending.remove(name)
                elif info.reason and target is not DesiredState.INACTIVE:
                    raise Unplaceable(f"Unit {name} cannot be placed: {info.reason}")
            if pending and not await self._pause(deadline):
                raise _timed_out(pending, str(target))

    async def wait_systemd_active(self, infos: Sequence[UnitInfo], attempts: int) -> None:
        """After ``launched``: wait for systemd to report the unit loaded and active
        on its machine."""
        pending = {info.name: info.machine_id for info in infos}
        deadline = self._deadline(attempts)
        while pending:
            states = await self.client.list_unit_states()
            for state in states:
                if (
                    pending.get(state.name) == state.machine_id
                    and state.load_state == "loaded"
                    and state.active_state == "active"
                ):
                    del pending[state.name]
            if pending and not await self._pause(deadline):
                raise _timed_out(sorted(pending), "active")

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
