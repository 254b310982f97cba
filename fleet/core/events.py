"""Cluster events (feature B13): what happened to a unit or a machine, and why.

Pure logic only: the :class:`Event` record, its kinds, how ids sort, the
bounds, how a reader's filter selects events, and how the engine turns one
pass (a plan, machines coming and going, cordons) into events. The registry
stores each event as its own key (``events/unit/<name>/<id>`` or
``events/machine/<machine-id>/<id>``, see ``docs/etcd-schema.md``), so a
history survives etcd's compaction; this module never names a key.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from fleet.errors import InvalidInput

# Bounds (documented in docs/etcd-schema.md): every event key lives on a lease
# of MAX_AGE + WINDOW seconds, shared by all events a writer records in one
# WINDOW; each stream keeps its newest MAX_PER_UNIT / MAX_PER_MACHINE events
# once trimmed.
MAX_AGE = 24 * 3600.0
WINDOW = 3600.0
MAX_PER_UNIT = 100
MAX_PER_MACHINE = 200
# An agent keeps at most this many events it could not write yet (oldest dropped).
MAX_BUFFERED = 1000
MAX_MESSAGE = 1024  # characters of a message or reason kept


class EventKind(StrEnum):
    """What happened. Engine: placed ... machine-uncordoned; agent: loaded ... failed."""

    PLACED = "placed"
    UNSCHEDULED = "unscheduled"
    MOVED = "moved"  # unscheduled from one machine and placed on another in one pass
    UNPLACEABLE = "unplaceable"
    MACHINE_JOINED = "machine-joined"
    MACHINE_LEFT = "machine-left"
    MACHINE_CORDONED = "machine-cordoned"
    MACHINE_UNCORDONED = "machine-uncordoned"
    LOADED = "loaded"
    STARTED = "started"
    STOPPED = "stopped"
    UNLOADED = "unloaded"
    FAILED = "failed"

    @property
    def about_machine(self) -> bool:
        return self.value.startswith("machine-")


class Event(NamedTuple):
    """One event. ``id`` sorts by time (then by writer and sequence); ``time`` is
    the writer's wall clock in seconds. A named tuple: the engine makes one per
    placement, and a tuple is the cheapest immutable record to build."""

    id: str
    time: float
    kind: EventKind
    unit: str | None = None
    machine: str | None = None
    message: str = ""
    reason: str | None = None
    result: str | None = None


def default_message(kind: EventKind, machine: str | None) -> str:
    """The message an event of ``kind`` on ``machine`` has unless it says more (the
    registry stores only messages that differ from it)."""
    if machine and kind is EventKind.PLACED:
        return f"placed on {machine[:8]}"
    if machine and kind is EventKind.UNSCHEDULED:
        return f"unscheduled from {machine[:8]}"
    return ""


class EventIds:
    """Sortable unique ids for one writer: ``<ms since epoch, 13 digits>-<seq>-<tag>``."""

    def __init__(self, tag: str) -> None:
        self._tag = "".join(c for c in tag if c.isalnum())[:12] or "x"
        self._seq = itertools.count()

    def next(self, time: float) -> str:
        return self.at(round(time * 1000))

    def at(self, ms: int) -> str:
        """The next id for a time in milliseconds since the epoch."""
        return f"{ms:013d}-{next(self._seq) & 0xFFFFFFFF:08x}-{self._tag}"


class EventFactory:
    """Builds events for one writer on its clock readings."""

    def __init__(self, tag: str) -> None:
        self.ids = EventIds(tag)

    def make(
        self,
        time: float,
        kind: EventKind,
        *,
        unit: str | None = None,
        machine: str | None = None,
        message: str = "",
        reason: str | None = None,
        result: str | None = None,
    ) -> Event:
        ms = round(time * 1000)  # stored to the millisecond
        message = message or default_message(kind, machine)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE]
        if reason is not None and len(reason) > MAX_MESSAGE:
            reason = reason[:MAX_MESSAGE]
        if result is not None and len(result) > MAX_MESSAGE:
            result = result[:MAX_MESSAGE]
        return Event(self.ids.at(ms), ms / 1000, kind, unit, machine, message, reason, result)


# --- reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    """A reader's filter. ``units``: those units' events, and the machine events
    of the machines those events name (a unit's history shows its machine
    leaving). ``machine``: events on that machine (with ``units``: those units'
    events there). ``since``: at or after that time. ``limit``: the newest that many."""

    units: tuple[str, ...] = ()
    machine: str | None = None
    since: float | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise InvalidInput(f"limit must be a positive number, not {self.limit}")

    def pick(self, events: Iterable[Event]) -> list[Event]:
        """The events this query selects out of ``events``, oldest first."""
        chosen = list(_matching(self, events))
        chosen.sort(key=lambda e: (e.id, e.unit or "", e.machine or ""))
        if self.limit is not None:
            chosen = chosen[-self.limit :]
        return chosen


def _matching(query: EventQuery, events: Iterable[Event]) -> Iterable[Event]:
    pool = [e for e in events if query.since is None or e.time >= query.since]
    if not query.units:
        return [e for e in pool if query.machine is None or e.machine == query.machine]
    wanted = set(query.units)
    of_units = [
        e
        for e in pool
        if e.unit in wanted and (query.machine is None or e.machine == query.machine)
    ]
    machines = {e.machine for e in of_units if e.machine}
    of_machines = [
        e for e in pool if e.unit is None and e.kind.about_machine and e.machine in machines
    ]
    return [*of_units, *of_machines]


class Follower:
    """The live side of a query: which watched events to pass on. With ``units``,
    machine events pass for machines those units' events named so far."""

    def __init__(self, query: EventQuery, seen: Iterable[Event] = ()) -> None:
        self.query = query
        self.machines: set[str] = set()
        for event in seen:
            self._note(event)

    def _note(self, event: Event) -> None:
        if self.query.units and event.unit in self.query.units and event.machine:
            self.machines.add(event.machine)

    def accepts(self, event: Event) -> bool:
        q = self.query
        if q.since is not None and event.time < q.since:
            return False
        if not q.units:
            return q.machine is None or event.machine == q.machine
        if event.unit in q.units:
            if q.machine is not None and event.machine != q.machine:
                return False
            self._note(event)
            return True
        return event.unit is None and event.kind.about_machine and event.machine in self.machines


# --- trimming ------------------------------------------------------------------------


def beyond_bound(ids: Sequence[str], bound: int) -> list[str]:
    """The ids to delete so that only the newest ``bound`` remain."""
    if len(ids) <= bound:
        return []
    return sorted(ids)[: len(ids) - bound]


# --- the engine's events -------------------------------------------------------------


@dataclass
class MachineWatch:
    """What the engine last saw of the machines, to tell who joined, left or was
    cordoned. The first look (a new leader's) records no joins or cordons (it
    cannot know what is new), but a machine that still holds units while absent
    is reported as left: the previous leader died before it could react."""

    present: set[str] | None = None
    cordoned: dict[str, str] = field(default_factory=dict)

    def observe(
        self,
        factory: EventFactory,
        now: float,
        machines: Iterable[str],
        cordons: Mapping[str, str],
        holding: Iterable[str] = (),
    ) -> list[Event]:
        present = set(machines)
        cordons = dict(cordons)
        first = self.present is None
        before = set(holding) | present if self.present is None else self.present
        events: list[Event] = []
        if not first:
            for m in sorted(present - before):
                events.append(
                    factory.make(
                        now,
                        EventKind.MACHINE_JOINED,
                        machine=m,
                        message="machine joined the cluster",
                    )
                )
        for m in sorted(before - present):
            events.append(
                factory.make(
                    now,
                    EventKind.MACHINE_LEFT,
                    machine=m,
                    message="machine lost: it left the cluster (its presence lease ended)",
                )
            )
        if not first:
            for m in sorted(cordons.keys() - self.cordoned.keys()):
                why = cordons[m]
                events.append(
                    factory.make(
                        now,
                        EventKind.MACHINE_CORDONED,
                        machine=m,
                        message="machine cordoned" + (f": {why}" if why else ""),
                        reason=why or None,
                    )
                )
            for m in sorted(self.cordoned.keys() - cordons.keys()):
                events.append(
                    factory.make(
                        now, EventKind.MACHINE_UNCORDONED, machine=m, message="machine uncordoned"
                    )
                )
        self.present, self.cordoned = present, cordons
        return events


@dataclass(frozen=True, slots=True)
class Decision:
    """One schedule decision of a pass: ``machine`` gains (placed) or loses the unit."""

    unit: str
    machine: str
    placed: bool
    reason: str


def schedule_events(
    factory: EventFactory,
    now: float,
    decisions: Sequence[Decision],
    unplaceable: Mapping[str, str],
) -> list[Event]:
    """A pass's unit events: ``unscheduled`` then ``placed``, or ``moved`` when a unit
    left one machine and landed on another in the same pass; ``unplaceable`` with
    the reason (only reasons that changed are passed in)."""
    left = {d.unit: d for d in decisions if not d.placed}
    events: list[Event] = []
    for d in decisions:
        if d.placed:
            continue
        events.append(
            factory.make(
                now,
                EventKind.UNSCHEDULED,
                unit=d.unit,
                machine=d.machine,
                message=default_message(EventKind.UNSCHEDULED, d.machine),
                reason=d.reason,
            )
        )
    for d in decisions:
        if not d.placed:
            continue
        before = left.get(d.unit)
        if before is not None and before.machine != d.machine:
            kind, message = EventKind.MOVED, f"moved from {before.machine[:8]} to {d.machine[:8]}"
        else:
            kind = EventKind.PLACED
            message = default_message(kind, d.machine)
        events.append(
            factory.make(
                now, kind, unit=d.unit, machine=d.machine, message=message, reason=d.reason
            )
        )
    for name, why in sorted(unplaceable.items()):
        events.append(
            factory.make(
                now, EventKind.UNPLACEABLE, unit=name, message="cannot be placed", reason=why
            )
        )
    return events
