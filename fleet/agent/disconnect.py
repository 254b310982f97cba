"""The partition policy of singletons: ``[X-Fleet] StopAfterDisconnect=<duration>``.

By default a unit keeps running however long its machine is cut from etcd (B7),
so once the cut outlasts ``agent_ttl`` the engine starts a replacement elsewhere
and, until the cut heals, the unit runs twice. A unit with
``StopAfterDisconnect=D`` opts out: :class:`DisconnectGuard` stops it once this
agent has gone ``D`` seconds without a presence refresh that etcd acknowledged
(measured from when that refresh was *sent*, so etcd cannot have expired the
presence earlier). With ``D`` plus the unit's stop time below ``agent_ttl`` the
old copy is stopped before the presence expires, that is before the engine can
place a replacement: the unit never runs on two machines at once.

The guard also holds back starting such a unit while the presence is not
confirmed for it (the reconciler asks :meth:`DisconnectGuard.may_start`): a
store read that succeeds just as the network comes back must not restart a copy
whose presence etcd is about to expire. The policy is read from the unit file
on disk (parsed once per hash), so the guard needs no etcd to act.
"""

from __future__ import annotations

import logging

from fleet.agent.localreqs import LocalRequirements
from fleet.agent.presence import Presence
from fleet.core.agent_plan import CurrentUnit
from fleet.core.model import DesiredState
from fleet.errors import FleetError
from fleet.ports import Clock, SystemdManager

log = logging.getLogger(__name__)

# How often the guard looks at the disconnect clock (it does no I/O while looking).
TICK = 0.1


class DisconnectGuard:
    def __init__(
        self,
        presence: Presence,
        systemd: SystemdManager,
        requirements: LocalRequirements,
        current: dict[str, CurrentUnit],
        clock: Clock,
    ) -> None:
        self.presence = presence
        self.systemd = systemd
        self.requirements = requirements
        self.current = current
        self.clock = clock
        self.stopped: list[str] = []  # units this guard stopped, in order (for tests and logs)
        # Until a presence is held, the disconnect counts from the agent's start.
        self._contact = clock.monotonic()

    def disconnected_for(self) -> float:
        """Seconds since the last presence refresh etcd acknowledged was sent."""
        lease = self.presence.lease
        if lease is not None and not lease.lost:
            self._contact = max(self._contact, lease.renewed_at)
        return max(0.0, self.clock.monotonic() - self._contact)

    def policy(self, name: str, hash: str) -> float | None:
        """The unit's StopAfterDisconnect in seconds (None: keep running), from its file."""
        reqs = self.requirements.get(name, hash)
        return None if reqs is None else reqs.stop_after_disconnect

    def may_start(self, name: str, hash: str) -> bool:
        """False while the unit's StopAfterDisconnect has run out (it would be stopped
        again at once, or run beside the replacement the engine is about to place)."""
        limit = self.policy(name, hash)
        return limit is None or self.disconnected_for() < limit

    async def run(self) -> None:
        """Stop every launched unit whose StopAfterDisconnect has run out (forever)."""
        while True:
            await self.clock.sleep(TICK)
            await self.check()

    async def check(self) -> None:
        elapsed = self.disconnected_for()
        for name, unit in sorted(self.current.items()):
            if unit.state is not DesiredState.LAUNCHED:
                continue
            limit = self.policy(name, unit.hash)
            if limit is None or elapsed < limit:
                continue
            log.warning(
                "unit %s: no presence refresh acknowledged for %.1fs "
                "(StopAfterDisconnect=%gs): stopping it",
                name,
                elapsed,
                limit,
            )
            try:
                await self.systemd.stop_unit(name)
            except FleetError as exc:
                log.warning("unit %s: stop after disconnect failed: %s", name, exc)
                continue
            held = self.current.get(name)
            if held is not None and held.hash == unit.hash:
                # Launched again (by the reconciler) once the presence is confirmed.
                self.current[name] = CurrentUnit(unit.hash, DesiredState.LOADED)
            self.stopped.append(name)
