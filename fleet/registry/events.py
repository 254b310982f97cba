"""Cluster events on etcd (EventStore, feature B13): one key per event.

An event is a key with a value (``events/unit/<name>/<id>`` or
``events/machine/<machine-id>/<id>``), not etcd history, so a history is
readable after a compaction. Age is bounded by leases: every writer puts its
events on one shared lease of ``MAX_AGE + WINDOW`` seconds, granted once per
``WINDOW`` (one LeaseGrant an hour, never one per event), so an event lives
between ``MAX_AGE`` and ``MAX_AGE + WINDOW``. Count is bounded by trimming:
a writer remembers the streams it wrote to and :meth:`trim_events` (run by the
engine and the agents off their hot paths) deletes the oldest keys of each of
those beyond its bound. The engine's events ride in its fenced schedule
transactions (:meth:`event_ops`); nobody else's writes wait for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from aetcd import rpc

from fleet.core.events import (
    MAX_AGE,
    MAX_PER_MACHINE,
    MAX_PER_UNIT,
    WINDOW,
    Event,
    EventQuery,
    beyond_bound,
)
from fleet.errors import InvalidInput, StoreError
from fleet.registry import codec
from fleet.registry.base import PAGE, RegistryBase
from fleet.registry.keys import EVENTS_UNIT, Keys, range_end
from fleet.registry.ops import batches, delete, put

log = logging.getLogger(__name__)


class EventsRegistry(RegistryBase):
    """EventStore."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._event_lease: tuple[int, float] | None = None  # (lease id, loop time granted)
        self._dirty_streams: set[bytes] = set()  # streams written since the last trim

    # --- writing ------------------------------------------------------------------

    async def event_ops(self, events: Sequence[Event]) -> list[Any]:
        """The puts that record ``events`` (for a caller's own transaction); grants
        the window's lease first when the last one is a window old."""
        if not events:
            return []
        lease_id = await self._window_lease()
        dirty = self._dirty_streams
        ops = []
        for count, event in enumerate(events, 1):
            if count % 500 == 0:
                await asyncio.sleep(0)  # a big pass's events must not stall the loop
            try:
                key = self.keys.event(event.unit, event.machine, event.id)
            except InvalidInput as exc:
                log.warning("event %s not recorded: %s", event.id, exc)
                continue
            dirty.add(key[: key.rindex(b"/") + 1])
            ops.append(put(key, codec.encode_event(event), lease_id))
        return ops

    def events_failed(self, exc: StoreError) -> None:
        """A write with event ops failed: if etcd lost the window's lease (it
        refuses the whole transaction), grant a fresh one next time."""
        if "lease not found" in str(exc):
            self._event_lease = None

    async def _window_lease(self) -> int:
        now = asyncio.get_running_loop().time()
        held = self._event_lease
        if held is not None and now - held[1] < WINDOW:
            return held[0]
        lease_id = await self._grant(MAX_AGE + WINDOW)
        self._event_lease = (lease_id, now)
        return lease_id

    async def record_events(self, events: Sequence[Event]) -> None:
        ops = await self.event_ops(events)
        try:
            for batch in batches(ops):
                await self._txn([], batch)
        except StoreError as exc:
            self.events_failed(exc)
            raise

    # --- reading ------------------------------------------------------------------

    def _decode(self, kv: Any) -> Event | None:
        try:
            stream, event_id = Keys.parse_event_key(self.keys.relative(bytes(kv.key)))
            kind, name = stream.split("/")[1:3]
            unit = name if kind == EVENTS_UNIT else None
            return codec.decode_event(bytes(kv.value), self._where(kv.key), event_id, unit)
        except (StoreError, InvalidInput) as exc:
            log.warning("%s", exc)
            return None

    async def list_events(self, query: EventQuery) -> tuple[list[Event], int]:
        await self.settle_events()  # this process's own events are readable at once
        found: list[Event] = []
        if query.units and query.machine is None:
            # A unit's history: its streams, then the events of the machines it names.
            revision = 0
            for name in sorted(set(query.units)):
                kvs, revision = await self._range(self.keys.event_stream(name, None), revision)
                found.extend(e for kv in kvs if (e := self._decode(kv)) is not None)
            machines = sorted({e.machine for e in found if e.machine})
            for machine_id in machines:
                kvs, revision = await self._range(
                    self.keys.event_stream(None, machine_id), revision
                )
                found.extend(e for kv in kvs if (e := self._decode(kv)) is not None)
        else:
            kvs, revision = await self._range(self.keys.events())
            found = [e for kv in kvs if (e := self._decode(kv)) is not None]
        return query.pick(found), revision

    async def watch_events(self, start_revision: int) -> AsyncGenerator[list[Event], None]:
        prefix = self.keys.events()
        stream = self.connection.watch(prefix, range_end(prefix), start_revision)
        try:
            async for response in stream:
                if response.created or not response.events:
                    continue
                batch = [
                    e
                    for ev in response.events
                    if ev.type == rpc.Event.PUT and (e := self._decode(ev.kv)) is not None
                ]
                if batch:
                    yield batch
        finally:
            await stream.aclose()

    # --- bounding -----------------------------------------------------------------

    async def settle_events(self) -> None:
        """Wait for events still being written in the background (the engine's)."""

    async def trim_events(self) -> int:
        await self.settle_events()
        streams, self._dirty_streams = sorted(self._dirty_streams), set()
        doomed: list[bytes] = []
        try:
            for stream in streams:
                keys = await self._keys_only(stream)
                relative = self.keys.relative(stream)
                bound = MAX_PER_UNIT if relative.split("/")[1] == EVENTS_UNIT else MAX_PER_MACHINE
                ids = [k[len(stream) :].decode() for k in keys]
                doomed.extend(stream + i.encode() for i in beyond_bound(ids, bound))
            for batch in batches([delete(key) for key in doomed]):
                await self._txn([], batch)
        except StoreError:
            self._dirty_streams.update(streams)  # try again next time
            raise
        return len(doomed)

    async def _keys_only(self, prefix: bytes) -> list[bytes]:
        end = range_end(prefix)
        start, keys = prefix, list[bytes]()
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=PAGE, keys_only=True)
            response = await self.connection.call("kv", "Range", request)
            keys.extend(bytes(kv.key) for kv in response.kvs)
            if not response.more or not response.kvs:
                return keys
            start = response.kvs[-1].key + b"\x00"


__all__ = ["EventsRegistry", "Keys"]
