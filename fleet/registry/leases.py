"""Leases this process holds in etcd: their records and the keepalive loop.

A held lease is refreshed every ttl/3 by a task the registry owns; once no
refresh has been acknowledged for a whole TTL (or etcd says it expired, or the
owner's check fails) it is marked lost, and losing it is final. Owners learn
of the loss by awaiting :meth:`HeldLease.wait_lost`, never by polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fleet.errors import StoreError

log = logging.getLogger(__name__)

Refresh = Callable[[int], Awaitable[int]]
"""Sends one keepalive for a lease id; returns the TTL etcd still grants (<= 0: expired)."""
Check = Callable[[], Awaitable[str | None]]
"""Run after each refresh: a text saying why the lease no longer serves, or None."""


class HeldLease:
    """An etcd lease this process keeps alive; ``lost`` is final."""

    def __init__(self, lease_id: int, ttl: float) -> None:
        self.lease_id = lease_id
        self.ttl = ttl
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
    """Refresh every ttl/3; after a failure retry quickly; give up (lost) once
    no refresh has been acknowledged for a whole TTL."""
    loop = asyncio.get_running_loop()
    interval = lease.ttl / 3
    retry = max(0.05, lease.ttl / 10)
    last_sent_ok = loop.time()
    pause = interval
    try:
        while not lease.lost:
            await asyncio.sleep(pause)
            sent = loop.time()
            try:
                remaining = await refresh(lease.lease_id)
                problem = None if check is None else await check()
            except StoreError as exc:
                if loop.time() - last_sent_ok >= lease.ttl:
                    lease.mark_lost(f"lease not refreshed for {lease.ttl:g}s: {exc}")
                pause = retry
                continue
            if remaining <= 0:
                lease.mark_lost("lease expired in etcd")
            elif problem is not None:
                lease.mark_lost(problem)
            last_sent_ok, pause = sent, interval
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Never die silently: the owner learns it through ``wait_lost``.
        log.exception("keepalive of lease %x crashed", lease.lease_id)
        lease.mark_lost(f"keepalive crashed: {exc!r}")
    finally:
        if lease.lost:
            log.warning("lease %x lost: %s", lease.lease_id, lease.lost_reason)
