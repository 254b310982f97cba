"""Leases this process holds in etcd: their records and the keepalive loop.

A held lease is refreshed every ttl/10 by a task the registry owns. Each
refresh has its own short deadline (``ttl/20``, at least 0.2 s); a failed one
is retried at once on a fresh connection, so a connection stuck in a network
blackout (packets dropped, TCP retransmitting on its back-off) never delays
the first refresh after the network is back. The presence therefore survives
any blackout shorter than ``ttl - ttl/10 - ttl/20`` (0.85 x ttl) less one
round trip; see docs/faults.md. Once no refresh has been acknowledged for a
whole TTL (or etcd says it expired, or the owner's check fails) the lease is
marked lost, and losing it is final. Owners learn of the loss by awaiting
:meth:`HeldLease.wait_lost`, never by polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from fleet.errors import StoreError

log = logging.getLogger(__name__)

Refresh = Callable[[int, float, bool], Awaitable[int]]
"""``refresh(lease_id, deadline, fresh)`` sends one keepalive within ``deadline`` seconds,
on a new connection if ``fresh``; returns the TTL etcd still grants (<= 0: expired)."""

# Refreshes per TTL, and each refresh's deadline as a fraction of the TTL.
REFRESHES_PER_TTL = 10
ATTEMPT_FRACTION = 1 / 20
MIN_ATTEMPT = 0.2  # seconds: a deadline no loaded machine misses on a healthy network
RETRY_PAUSE = 0.05


def survivable_blackout(ttl: float) -> float:
    """The longest network blackout a lease of ``ttl`` always survives (less one round
    trip): the last refresh may have been sent up to ``ttl/10`` before the blackout
    began, and the first refresh after it may start up to one attempt later."""
    return ttl - ttl / REFRESHES_PER_TTL - max(MIN_ATTEMPT, ttl * ATTEMPT_FRACTION) - RETRY_PAUSE


Check = Callable[[], Awaitable[str | None]]
"""Run after each refresh: a text saying why the lease no longer serves, or None."""


class HeldLease:
    """An etcd lease this process keeps alive; ``lost`` is final."""

    def __init__(self, lease_id: int, ttl: float) -> None:
        self.lease_id = lease_id
        self.ttl = ttl
        # time.monotonic() when the last acknowledged refresh (or the grant) was sent:
        # etcd's expiry of the lease is no earlier than renewed_at + ttl.
        self.renewed_at = time.monotonic()
        self.lost_reason = ""
        self._lost = asyncio.Event()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    async def wait_lost(self) -> str:
        """Block until the lease is lost; returns why."""
        await self._lost.wait()
        return self.lost_reason

    def mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self.lost_reason = reason
            self._lost.set()


class EtcdLeadership(HeldLease):
    """The engine's term: writes are fenced on the leader key holding exactly
    ``value`` at ``mod_revision``."""

    def __init__(
        self,
        machine_id: str,
        *,
        version: str,
        lease_id: int,
        ttl: float,
        value: bytes,
        revision: int,
    ) -> None:
        super().__init__(lease_id, ttl)
        self.machine_id = machine_id
        self.version = version
        self.value = value
        self.mod_revision = revision


class EtcdMachineLease(HeldLease):
    """An agent's presence: the machine key and its unit states hang on it."""

    def __init__(self, machine_id: str, lease_id: int, ttl: float) -> None:
        super().__init__(lease_id, ttl)
        self.machine_id = machine_id


async def keep_alive(lease: HeldLease, refresh: Refresh, check: Check | None = None) -> None:
    """Refresh every ttl/10, each refresh within its own short deadline; after a
    failure retry at once on a fresh connection; give up (lost) once no refresh has
    been acknowledged for a whole TTL."""
    interval = lease.ttl / REFRESHES_PER_TTL
    deadline = max(MIN_ATTEMPT, lease.ttl * ATTEMPT_FRACTION)
    pause, fresh = interval, False
    try:
        while not lease.lost:
            await asyncio.sleep(pause)
            sent = time.monotonic()
            try:
                remaining = await refresh(lease.lease_id, deadline, fresh)
                problem = None if check is None else await check()
            except StoreError as exc:
                if time.monotonic() - lease.renewed_at >= lease.ttl:
                    lease.mark_lost(f"lease not refreshed for {lease.ttl:g}s: {exc}")
                pause, fresh = RETRY_PAUSE, True
                continue
            if remaining <= 0:
                lease.mark_lost("lease expired in etcd")
            elif problem is not None:
                lease.mark_lost(problem)
            lease.renewed_at, pause, fresh = sent, interval, False
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Never die silently: the owner learns it through ``wait_lost``.
        log.exception("keepalive of lease %x crashed", lease.lease_id)
        lease.mark_lost(f"keepalive crashed: {exc!r}")
    finally:
        if lease.lost:
            log.warning("lease %x lost: %s", lease.lease_id, lease.lost_reason)
