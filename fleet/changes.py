"""The change feed: "this part of the cluster changed" notices, driven by etcd watches.

``fleetctl list-* --watch`` and the web dashboard re-read a listing when it
changed instead of polling it. :class:`ChangeFeed` holds one etcd watch per
registry scope a *feed topic* covers (``units``: desired states, placements,
unit states, unplaceable reasons; ``machines``: presence, dynamic metadata,
cordons and drains), started when the first subscriber of that topic arrives
and stopped when its last one leaves, however many clients listen. A
:class:`Subscription` keeps only the newest revision per topic, so a slow
reader costs a few bytes, never a queue: it learns that something changed and
reads the listing again, which is always correct. Nothing here decodes a
listing; the routes (``GET /fleet/v1/watch``, the dashboard's event stream)
only forward the notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from fleet.errors import FleetError, InvalidInput, StoreCompacted
from fleet.ports import Watchable
from fleet.ports.events import Scope, Topic

log = logging.getLogger(__name__)

# Feed topic -> the registry scopes whose changes it reports.
TOPICS: dict[str, tuple[Topic, ...]] = {
    "units": (Topic.JOBS, Topic.SCHEDULE, Topic.STATES, Topic.REASONS),
    "machines": (Topic.MACHINES, Topic.METADATA, Topic.MAINTENANCE),
}
_RETRY = 1.0  # seconds before a watch that failed is started again


def parse_topics(text: str | None) -> tuple[str, ...]:
    """``"units,machines"`` -> the topics, in canonical order; every topic when empty."""
    if not text:
        return tuple(TOPICS)
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - TOPICS.keys())
    if unknown:
        raise InvalidInput(f"unknown topic {unknown[0]!r}: use one of {', '.join(TOPICS)}")
    return tuple(topic for topic in TOPICS if topic in wanted)


@dataclass(eq=False)
class Subscription:
    """One listener's pending notices: the newest revision per changed topic."""

    topics: tuple[str, ...]
    revision: int  # the registry revision when the subscription started
    _pending: dict[str, int] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False  # the feed closed: no more notices will come

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def notify(self, topic: str, revision: int) -> None:
        self._pending[topic] = max(revision, self._pending.get(topic, 0))
        self._wake.set()

    async def next_changes(self, patience: float) -> dict[str, int]:
        """The topics that changed since the last call (topic -> newest revision),
        waiting up to ``patience`` seconds for one; {} when none did (or the feed
        closed: see :attr:`closed`)."""
        if not self._pending and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(patience):
                    await self._wake.wait()
        self._wake.clear()
        changes, self._pending = self._pending, {}
        return changes


class ChangeFeed:
    """The shared etcd watches behind every subscription of one API app."""

    def __init__(self, registry: Watchable) -> None:
        self._registry = registry
        self._subscribers: dict[str, set[Subscription]] = {topic: set() for topic in TOPICS}
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._closed = False

    def close(self) -> None:
        """End every subscription (their streams finish, so a server stopping need
        not wait for its never-ending answers) and refuse new ones."""
        self._closed = True
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.close()

    async def revision(self) -> int:
        """The registry's current revision (StoreUnavailable when etcd is down)."""
        # The smallest scope there is (one key): its read tells the current revision.
        _, revision = await self._registry.list_changes(Scope(Topic.LEADER))
        return revision

    @contextlib.asynccontextmanager
    async def subscribe(self, topics: Iterable[str]) -> AsyncIterator[Subscription]:
        """A subscription to ``topics``: every change made after
        ``subscription.revision`` is notified, so a listing read once this is
        entered misses nothing (StoreUnavailable if etcd cannot be read)."""
        wanted = tuple(topics)
        revision = await self.revision()
        subscription = Subscription(wanted, revision)
        if self._closed:
            subscription.close()
        for topic in wanted:
            self._subscribers[topic].add(subscription)
            if topic not in self._tasks:
                self._tasks[topic] = [
                    asyncio.create_task(self._watch(topic, scope, revision + 1))
                    for scope in TOPICS[topic]
                ]
        try:
            yield subscription
        finally:
            for topic in wanted:
                self._subscribers[topic].discard(subscription)
                if not self._subscribers[topic]:
                    for task in self._tasks.pop(topic, []):
                        task.cancel()

    async def follow(
        self, topics: Iterable[str], heartbeat: float = 15.0
    ) -> AsyncIterator[frozenset[str]]:
        """The topics that changed, batch by batch; first every topic once, as soon
        as the watches cover every later change (read the listings then)."""
        async with self.subscribe(topics) as subscription:
            yield frozenset(subscription.topics)
            while not subscription.closed:
                changes = await subscription.next_changes(heartbeat)
                if changes:
                    yield frozenset(changes)

    def _publish(self, topic: str, revision: int) -> None:
        for subscription in self._subscribers[topic]:
            subscription.notify(topic, revision)

    async def _watch(self, topic: str, topic_scope: Topic, start: int) -> None:
        scope = Scope(topic_scope)
        while True:
            try:
                stream = self._registry.watch(scope, start)
                async with contextlib.aclosing(stream):
                    async for batch in stream:
                        revision = max(change.revision for change in batch)
                        start = revision + 1
                        self._publish(topic, revision)
            except StoreCompacted:
                # Changes may be gone unseen: say "changed" and watch from now.
                start = await self._revision_or_zero()
                self._publish(topic, start)
                start += 1
            except FleetError as exc:
                log.warning("change feed watch on %s failed: %s", scope, exc)
                await asyncio.sleep(_RETRY)

    async def _revision_or_zero(self) -> int:
        try:
            return await self.revision()
        except FleetError:
            return 0

    def statistics(self) -> dict[str, int]:
        """Subscribers and running watches per topic (for tests and debugging)."""
        return {
            **{f"subscribers_{t}": len(s) for t, s in self._subscribers.items()},
            "watches": sum(len(tasks) for tasks in self._tasks.values()),
        }
