"""Cluster events (B13) for readers: wire form, times, and the list/follow use cases.

The API (``GET /fleet/v1/events``) and fleetctl's etcd driver both read
through these, so a filter means the same on either road. Times on the wire
are RFC 3339 in UTC with milliseconds; ``--since`` also takes a duration.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime

from fleet.core.events import Event, EventKind, EventQuery, Follower
from fleet.errors import InvalidInput
from fleet.ports import EventStore

__all__ = [
    "follow",
    "follow_from",
    "from_wire",
    "list_events",
    "parse_since",
    "parse_time",
    "rfc3339",
    "rfc3339_exact",
    "wire",
]


def rfc3339(seconds: float) -> str:
    """UTC, millisecond precision: ``2026-12-02T13:47:54.123Z`` (rounded to the
    millisecond, as events are stored)."""
    ms = round(seconds * 1000)
    stamp = datetime.fromtimestamp(ms // 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def rfc3339_exact(seconds: float) -> str:
    """UTC with microseconds: a ``since`` that loses nothing on the way."""
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """An RFC 3339 time (``Z`` or an offset required) -> seconds since the epoch."""
    raw = text.strip()
    if raw[-1:] in ("z", "Z"):
        raw = raw[:-1] + "+00:00"
    try:
        stamp = datetime.fromisoformat(raw)
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None or "T" not in raw.upper():
        raise InvalidInput(
            f"invalid time {text!r}: want RFC 3339 with a time zone, e.g. 2026-01-02T15:04:05Z"
        )
    return stamp.timestamp()


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from ``now`` (``10m``, ``1h30m``, ``90s``) or an
    RFC 3339 time."""
    from fleet.config import parse_go_duration

    raw = text.strip()
    if not raw:
        raise InvalidInput("--since needs a duration (10m, 1h) or an RFC 3339 time")
    try:
        seconds = parse_go_duration(raw)
    except ValueError:
        if raw[:1].isdigit() and "T" not in raw.upper():
            raise InvalidInput(
                f"invalid --since {text!r}: want a duration (10m, 1h) or an RFC 3339 time"
            ) from None
        return parse_time(raw)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"invalid --since {text!r}: must not be negative")
    return now - seconds


def wire(event: Event) -> dict[str, object]:
    """The API's and ``fleetctl events -o json``'s form of an event."""
    return {
        "id": event.id,
        "time": rfc3339(event.time),
        "kind": event.kind.value,
        "unit": event.unit,
        "machine": event.machine,
        "message": event.message,
        "reason": event.reason,
        "result": event.result,
    }


def _opt(obj: Mapping[str, object], field: str) -> str | None:
    value = obj.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"not an event: {field} is not a string")
    return value


def from_wire(obj: object) -> Event:
    """An event from its wire form (InvalidInput if it is not one)."""
    if not isinstance(obj, Mapping):
        raise InvalidInput("not an event: not an object")
    try:
        kind = EventKind(str(obj.get("kind")))
    except ValueError:
        raise InvalidInput(f"not an event: unknown kind {obj.get('kind')!r}") from None
    return Event(
        id=str(obj.get("id") or ""),
        time=parse_time(str(obj.get("time") or "")),
        kind=kind,
        unit=_opt(obj, "unit"),
        machine=_opt(obj, "machine"),
        message=_opt(obj, "message") or "",
        reason=_opt(obj, "reason"),
        result=_opt(obj, "result"),
    )


async def list_events(store: EventStore, query: EventQuery) -> tuple[list[Event], int]:
    """The events ``query`` selects, oldest first, and the revision read."""
    return await store.list_events(query)


async def follow(store: EventStore, query: EventQuery) -> AsyncGenerator[Event, None]:
    """What ``query`` selects now, then every new event it selects as it is
    recorded, until the caller stops."""
    found, revision = await store.list_events(query)
    for event in found:
        yield event
    async for event in follow_from(store, query, found, revision):
        yield event


async def follow_from(
    store: EventStore, query: EventQuery, seen: list[Event], revision: int
) -> AsyncGenerator[Event, None]:
    """The events ``query`` selects recorded after ``revision`` (``seen``: what
    the listing at that revision returned, for the machines a unit ran on)."""
    follower = Follower(EventQuery(query.units, query.machine, query.since), seen)
    stream = store.watch_events(revision + 1)
    async with contextlib.aclosing(stream):
        async for batch in stream:
            for event in sorted(batch, key=lambda e: e.id):
                if follower.accepts(event):
                    yield event
