"""fleet.events (B13): times on the wire, --since, the wire form of an event."""

from __future__ import annotations

import pytest

from fleet.core.events import EventFactory, EventKind
from fleet.errors import InvalidInput
from fleet.events import from_wire, parse_since, parse_time, rfc3339, rfc3339_exact, wire


def test_times_are_rfc3339_utc_and_read_back() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1796220154.1059) == "2026-12-02T14:02:34.106Z"
    assert parse_time("2026-12-02T14:02:34.105Z") == pytest.approx(1796220154.105)
    assert parse_time("2026-12-02T15:02:34+01:00") == pytest.approx(1796220154.0)
    assert parse_time(rfc3339_exact(1796220154.123456)) == pytest.approx(1796220154.123456)


@pytest.mark.parametrize("text", ["yesterday", "2026-12-02", "2026-12-02T14:02:34", "", "Z"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="RFC 3339"):
        parse_time(text)


def test_since_takes_durations_and_times() -> None:
    assert parse_since("10m", 1000.0) == 400.0
    assert parse_since("1h30m", 10000.0) == 4600.0
    assert parse_since("1970-01-01T00:01:00Z", 1e9) == 60.0
    with pytest.raises(InvalidInput, match="negative"):
        parse_since("-5m", 1000.0)
    with pytest.raises(InvalidInput):
        parse_since("10", 1000.0)  # Go durations need a unit
    with pytest.raises(InvalidInput):
        parse_since("", 1000.0)


def test_the_wire_form_reads_back() -> None:
    event = EventFactory("w").make(
        1796220154.105, EventKind.FAILED, unit="a.service", machine="m1", result="exit-code"
    )
    assert from_wire(wire(event)) == event
    with pytest.raises(InvalidInput):
        from_wire({**wire(event), "kind": "exploded"})
    with pytest.raises(InvalidInput):
        from_wire([])
