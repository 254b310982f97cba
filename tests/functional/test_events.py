"""Events (B13) on real systemd machines: a machine is killed (power loss) and
``fleetctl events`` tells its unit's story, placed -> started -> machine lost ->
unscheduled -> placed elsewhere -> started, through the etcd driver and a
surviving machine's API. A private cluster: the test kills a machine."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.functional.cluster import Cluster
from tests.functional.isolated import api_fleetctl, private_clusters
from tests.functional.unitviews import poll, unit_path, wait_active

pytestmark = pytest.mark.functional

UNIT = "hello.service"


@pytest.fixture
def fresh() -> Iterator[Callable[..., Cluster]]:
    yield from private_clusters("fev", 160, slots=4)


def history(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.fleetctl("events", UNIT, "-o", "json").stdout
    events: list[dict[str, Any]] = json.loads(out)
    return events


def story(events: list[dict[str, Any]], first: str, second: str) -> list[str]:
    """The milestones, in order, that the history shows (each once)."""
    wanted = [
        ("placed", first),
        ("started", first),
        ("machine-left", first),
        ("unscheduled", first),
        ("moved", second),
        ("started", second),
    ]
    found: list[str] = []
    for event in events:
        if len(found) < len(wanted) and (event["kind"], event["machine"]) == wanted[len(found)]:
            found.append(event["kind"])
    return found


def test_a_killed_machines_unit_has_its_whole_story_in_events(
    fresh: Callable[..., Cluster],
) -> None:
    cluster = fresh(2)
    cluster.fleetctl("start", unit_path(UNIT))
    (first,) = wait_active(cluster, 1)[UNIT]
    poll(
        cluster,
        lambda: history(cluster),
        lambda h: ("started", first) in [(e["kind"], e["machine"]) for e in h],
        "the first start recorded",
    )
    (survivor,) = [m for m in cluster.machines if m.machine_id != first]

    cluster.kill(first)

    events = poll(
        cluster,
        lambda: history(cluster),
        lambda h: len(story(h, first, survivor.machine_id)) == 6,
        "the move and the second start recorded",
        timeout=90,
    )
    assert story(events, first, survivor.machine_id) == [
        "placed", "started", "machine-left", "unscheduled", "moved", "started"
    ]  # fmt: skip
    unscheduled = next(e for e in events if e["kind"] == "unscheduled")
    assert "went away" in unscheduled["reason"]
    started = [e for e in events if e["kind"] == "started"]
    assert all(e["result"] == "done" for e in started)

    # The same story in the table, through the surviving machine's API.
    table = api_fleetctl(survivor, "events", UNIT, "--full")
    assert table.returncode == 0, table.stderr
    rows = [[c for c in line.split("\t") if c] for line in table.stdout.splitlines()]
    assert rows[0] == ["TIME", "UNIT", "MACHINE", "EVENT", "MESSAGE"]
    kinds = [row[3] for row in rows[1:]]
    assert [row[3] for row in rows[1:]] == [e["kind"] for e in events], kinds
    assert any(row[2] == first and row[3] == "machine-left" for row in rows[1:])
