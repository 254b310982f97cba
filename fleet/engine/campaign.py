"""Winning the engine leadership: campaigning, waiting for a vacancy, resigning.

Every fleetd campaigns; a standby that lost the race watches the leader record
and tries again only when it is deleted (its lease expired, it resigned, or a
newer engine deposed it): a standby holds no lease and sends nothing to etcd
while a leader lives (one read every lease TTL besides its watch). A registry
failure is reported to the caller through ``on_store_failure``.

The engine version gate (fleet's ``engine/version``): :data:`ENGINE_VERSION`
is this code's engine protocol version; an engine never leads while a newer
version is registered, and a newer engine deposes a leader of an older one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from fleet.errors import StoreError
from fleet.ports import Clock, EngineStore, LeaderChanged, Leadership, Scope, Topic, Watchable

log = logging.getLogger(__name__)

_LEADER = Scope(Topic.LEADER)

ENGINE_VERSION = 1
"""Raise when engines of this code must not share leadership with older ones
(a changed schedule format or scheduling rule); see docs/upgrading.md."""


class EngineRegistry(EngineStore, Watchable, Protocol):
    """What the engine needs from the registry (``EtcdRegistry`` implements it)."""


class Campaign:
    """One fleetd's candidacy for the engine leadership."""

    def __init__(
        self,
        registry: EngineRegistry,
        machine_id: str,
        version: str,
        ttl: float,
        *,
        engine_version: int = ENGINE_VERSION,
        interval: float,
        clock: Clock,
        on_store_failure: Callable[[], None],
    ) -> None:
        self._registry = registry
        self._machine_id = machine_id
        self._version = version
        self._engine_version = engine_version
        self._ttl = ttl
        self._interval = interval
        self._clock = clock
        self._on_store_failure = on_store_failure

    async def win(self) -> Leadership:
        """Campaign until this engine leads."""
        while True:
            try:
                leadership = await self._registry.campaign(
                    self._machine_id, self._version, self._ttl, self._engine_version
                )
            except StoreError as exc:
                log.warning("engine: cannot campaign for leadership: %s", exc)
                self._on_store_failure()
                await self._clock.sleep(self._interval)
                continue
            if leadership is not None:
                return leadership
            await self._wait_vacant()

    async def _wait_vacant(self) -> None:
        """Return when the leader record is deleted (lease expired, resigned,
        deposed) or found absent. Nothing but a watch meanwhile: a read every
        lease TTL guards against a watch that went quiet."""
        while True:
            try:
                async with self._clock.timeout(max(self._ttl, self._interval)):
                    listing, revision = await self._registry.list_changes(_LEADER)
                    if not listing:
                        return
                    stream = self._registry.watch(_LEADER, revision + 1)
                    async with contextlib.aclosing(stream):
                        async for batch in stream:
                            if any(
                                isinstance(c, LeaderChanged) and c.leader is None for c in batch
                            ):
                                return
            except TimeoutError:
                continue
            except StoreError as exc:
                log.warning("engine: cannot watch the leader: %s", exc)
                self._on_store_failure()
                await self._clock.sleep(self._interval)
                return

    async def resign(self, leadership: Leadership | None) -> None:
        if leadership is None or leadership.lost:
            return
        with contextlib.suppress(StoreError):
            await self._registry.resign(leadership)
