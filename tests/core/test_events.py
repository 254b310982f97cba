"""The pure event logic (B13): ids, the engine's events of a pass, machine
comings and goings, query filters, follow filters and the trim bound."""

from __future__ import annotations

import pytest

from fleet.core.events import (
    MAX_MESSAGE,
    Decision,
    EventFactory,
    EventIds,
    EventKind,
    EventQuery,
    Follower,
    MachineWatch,
    beyond_bound,
    schedule_events,
)
from fleet.errors import InvalidInput


def test_ids_sort_by_time_then_by_sequence() -> None:
    ids = EventIds("m/1")
    made = [ids.next(t) for t in (5.0, 5.0, 5.0005, 6.0, 1000000.0)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all("/" not in i for i in made)
    assert made[0].startswith("0000000005000-")


def test_messages_and_reasons_are_clipped() -> None:
    event = EventFactory("m").make(
        1.0, EventKind.FAILED, unit="a", message="x" * 5000, reason="y" * 5000
    )
    assert len(event.message) == len(event.reason or "") == MAX_MESSAGE


def test_a_unit_leaving_and_landing_in_one_pass_is_unscheduled_then_moved() -> None:
    f = EventFactory("e")
    events = schedule_events(
        f,
        10.0,
        [
            Decision("a.service", "m1", False, "unscheduled: its target machine went away"),
            Decision("a.service", "m2", True, "placed on the least-loaded machine"),
            Decision("b.service", "m2", True, "placed on the machine its MachineID names"),
            Decision("c.service", "m3", False, "unscheduled: its desired state is inactive"),
        ],
        {"d.service": "no machine satisfies its requirements"},
    )
    assert [(e.kind, e.unit, e.machine) for e in events] == [
        (EventKind.UNSCHEDULED, "a.service", "m1"),
        (EventKind.UNSCHEDULED, "c.service", "m3"),
        (EventKind.MOVED, "a.service", "m2"),
        (EventKind.PLACED, "b.service", "m2"),
        (EventKind.UNPLACEABLE, "d.service", None),
    ]
    assert events[2].message == "moved from m1 to m2"
    assert events[4].reason == "no machine satisfies its requirements"
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_machine_watch_reports_changes_only_after_its_first_look() -> None:
    f = EventFactory("e")
    watch = MachineWatch()
    assert watch.observe(f, 1.0, ["m1", "m2"], {"m2": "old"}) == []
    events = watch.observe(f, 2.0, ["m2", "m3"], {"m3": "disk"})
    assert [(e.kind, e.machine) for e in events] == [
        (EventKind.MACHINE_JOINED, "m3"),
        (EventKind.MACHINE_LEFT, "m1"),
        (EventKind.MACHINE_CORDONED, "m3"),
        (EventKind.MACHINE_UNCORDONED, "m2"),
    ]
    assert "machine lost" in events[1].message
    assert events[2].reason == "disk"
    assert all(e.unit is None for e in events)
    assert watch.observe(f, 3.0, ["m2", "m3"], {"m3": "disk"}) == []


def test_a_new_leader_reports_absent_machines_that_still_hold_units() -> None:
    f = EventFactory("e")
    events = MachineWatch().observe(f, 1.0, ["m1"], {"m1": "x"}, holding=["m1", "m2"])
    assert [(e.kind, e.machine) for e in events] == [(EventKind.MACHINE_LEFT, "m2")]


def _history() -> list:  # type: ignore[type-arg]
    f = EventFactory("t")
    return [
        f.make(1.0, EventKind.PLACED, unit="a", machine="m1"),
        f.make(2.0, EventKind.MACHINE_CORDONED, machine="m9"),
        f.make(3.0, EventKind.MACHINE_LEFT, machine="m1"),
        f.make(3.0, EventKind.UNSCHEDULED, unit="a", machine="m1"),
        f.make(3.0, EventKind.MOVED, unit="a", machine="m2"),
        f.make(4.0, EventKind.PLACED, unit="b", machine="m2"),
    ]


def test_a_units_history_includes_its_machines_events() -> None:
    h = _history()
    picked = EventQuery(units=("a",)).pick(reversed(h))
    assert picked == [h[0], h[2], h[3], h[4]]
    assert EventQuery(units=("a",), machine="m2").pick(h) == [h[4]]
    assert EventQuery(machine="m1").pick(h) == [h[0], h[2], h[3]]
    assert EventQuery(since=3.0).pick(h) == h[2:]
    assert EventQuery(limit=2).pick(h) == h[4:]
    assert EventQuery().pick(h) == h
    with pytest.raises(InvalidInput):
        EventQuery(limit=0)


def test_follower_passes_the_machines_a_unit_ran_on() -> None:
    h = _history()
    follower = Follower(EventQuery(units=("a",)), seen=[h[0]])
    assert [follower.accepts(e) for e in h[1:]] == [False, True, True, True, False]
    f = EventFactory("u")
    assert follower.accepts(f.make(5.0, EventKind.MACHINE_LEFT, machine="m2"))  # a moved there
    assert not Follower(EventQuery(since=10.0)).accepts(h[0])
    assert Follower(EventQuery(machine="m2")).accepts(h[5])


def test_beyond_bound_keeps_the_newest() -> None:
    assert beyond_bound(["3", "1", "2"], 5) == []
    assert beyond_bound(["3", "1", "4", "2"], 2) == ["1", "2"]
