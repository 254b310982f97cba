"""Unit-state publishing: what systemd does with the units this agent holds.

:class:`StatePublisher` reads systemd's (load, active, sub) of every held unit
and writes each state that differs from the one last published, on the
presence lease; the state of a unit no longer held is deleted. It refreshes
when systemd hints that a held unit changed, when asked (after a reconcile
pass, after registering) and every ``resync_interval``: no poll of every unit
every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from fleet.agent.presence import Presence
from fleet.core.agent_plan import CurrentUnit
from fleet.core.model import UnitState
from fleet.errors import StoreError, SystemdError
from fleet.ports import AgentStore, Clock, MachineLease, SystemdManager, UnitChange

log = logging.getLogger(__name__)

_UNKNOWN = ("not-found", "inactive", "dead")


class StatePublisher:
    """Publishes the states of ``held`` (the executor's live view) for ``presence``."""

    def __init__(
        self,
        store: AgentStore,
        systemd: SystemdManager,
        presence: Presence,
        held: Mapping[str, CurrentUnit],
        clock: Clock,
        *,
        resync_interval: float,
        debounce: float,
        retry_interval: float,
    ) -> None:
        self.store = store
        self.systemd = systemd
        self.presence = presence
        self.machine_id = presence.machine.id
        self.held = held
        self.clock = clock
        self.resync_interval = resync_interval
        self.debounce = debounce
        self.retry_interval = retry_interval
        self._dirty = asyncio.Event()
        self._published: dict[str, UnitState] = {}
        # The lease ``_published`` describes: states hang on a lease.
        self._published_on: MachineLease | None = None

    def mark_dirty(self) -> None:
        """Refresh soon (debounced) instead of at the next resync."""
        self._dirty.set()

    async def follow(self, changes: asyncio.Queue[UnitChange]) -> None:
        """Turn systemd's hints about held units into refreshes (forever)."""
        while True:
            change = await changes.get()
            if change.unit in self.held:
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
        triples = await self.systemd.unit_states(held) if held else {}
        for name, unit in sorted(held.items()):
            if not unit.hash:
                continue
            load, active, sub = triples.get(name, _UNKNOWN)
            state = UnitState(name, self.machine_id, load, active, sub, unit.hash, unit.state)
            if self._published.get(name) != state:
                await self.store.publish_unit_state(lease, state)
                self._published[name] = state
        for name in sorted(set(self._published) - set(held)):
            await self.store.delete_unit_state(name, self.machine_id)
            del self._published[name]

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
