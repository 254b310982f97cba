"""Winning the engine leadership: campaigning, waiting for a vacancy, resigning.

Every fleetd campaigns; a standby that lost the race waits until the leader
record is deleted (its lease expired or it resigned) or one interval passes,
then tries again. A registry failure is reported to the caller through
``on_store_failure`` (the engine arms its post-outage grace from it).
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
        interval: float,
        clock: Clock,
        on_store_failure: Callable[[], None],
    ) -> None:
        self._registry = registry
        self._machine_id = machine_id
        self._version = version
        self._ttl = ttl
        self._interval = interval
        self._clock = clock
        self._on_store_failure = on_store_failure

    async def win(self) -> Leadership:
        """Campaign until this engine leads."""
        while True:
            try:
                leadership = await self._registry.campaign(
                    self._machine_id, self._version, self._ttl
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
        """Return when the leader record is deleted (lease expired, resigned) or
        after one interval: a deletion lets a standby take over well within the TTL."""
        try:
            async with self._clock.timeout(self._interval):
                listing, revision = await self._registry.list_changes(_LEADER)
                if not listing:
                    return
                stream = self._registry.watch(_LEADER, revision + 1)
                async with contextlib.aclosing(stream):
                    async for batch in stream:
                        if any(isinstance(c, LeaderChanged) and c.leader is None for c in batch):
                            return
        except TimeoutError:
            pass
        except StoreError:
            self._on_store_failure()

    async def resign(self, leadership: Leadership | None) -> None:
        if leadership is None or leadership.lost:
            return
        with contextlib.suppress(StoreError):
            await self._registry.resign(leadership)
