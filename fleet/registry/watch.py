"""Typed listings and resumable watches of the registry (Watchable).

A listing reads one scope at one revision and delivers it as changes; a
watch delivers the changes after a revision, re-created from the last
delivered revision + 1 when the stream breaks (growing pauses, no busy loop
while etcd is down). A compacted revision raises StoreCompacted: the caller
lists again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from aetcd import rpc

from fleet.errors import StoreUnavailable
from fleet.ports.events import RegistryEvent, Scope
from fleet.registry.base import RegistryBase
from fleet.registry.decoding import decode, scope_prefix
from fleet.registry.keys import range_end

log = logging.getLogger(__name__)

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 2.0


class WatchRegistry(RegistryBase):
    """Watchable."""

    async def list_changes(self, scope: Scope) -> tuple[list[RegistryEvent], int]:
        kvs, revision = await self._range(scope_prefix(self.keys, scope))
        changes = []
        for kv in kvs:
            change = decode(
                scope.topic, self.keys.relative(kv.key), bytes(kv.value), int(kv.mod_revision)
            )
            if change is not None:
                changes.append(change)
        return changes, revision

    async def watch(
        self, scope: Scope, start_revision: int
    ) -> AsyncGenerator[list[RegistryEvent], None]:
        """Batches of changes in ``scope`` from ``start_revision`` (0: from now)."""
        key = scope_prefix(self.keys, scope)
        end = range_end(key)
        next_revision = start_revision
        delay = _BACKOFF_MIN
        while True:
            try:
                stream = self.connection.watch(key, end, next_revision)
                async with contextlib.aclosing(stream):
                    async for response in stream:
                        delay = _BACKOFF_MIN
                        if response.created:
                            if next_revision <= 0:
                                next_revision = int(response.header.revision) + 1
                            continue
                        if not response.events:
                            # A progress notification: nothing missed up to here.
                            next_revision = max(next_revision, int(response.header.revision) + 1)
                            continue
                        next_revision = int(response.events[-1].kv.mod_revision) + 1
                        changes = self._changes(scope, response.events)
                        if changes:
                            yield changes
            except StoreUnavailable as exc:
                log.warning("watch on %s broke (%s); resuming from %d", scope, exc, next_revision)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    def _changes(self, scope: Scope, events: Sequence[Any]) -> list[RegistryEvent]:
        changes = []
        for event in events:
            kv = event.kv
            deleted = event.type == rpc.Event.DELETE
            change = decode(
                scope.topic,
                self.keys.relative(kv.key),
                None if deleted else bytes(kv.value),
                int(kv.mod_revision),
            )
            if change is not None:
                changes.append(change)
        return changes
