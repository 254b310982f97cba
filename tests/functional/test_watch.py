"""``fleetctl list-units --watch -o json`` against a real machine's fleetd (feature B3)."""

from __future__ import annotations

import json
import time

import pytest

from tests.functional.cluster import Cluster
from tests.functional.isolated import API_PORT
from tests.functional.unitviews import unit_path
from tests.functional.watching import Watcher

pytestmark = pytest.mark.functional

WATCH_BOUND = 1.0  # seconds from the unit being active to the watch showing it (issue 11)


def _notice(line: str) -> dict[str, object]:
    notice: dict[str, object] = json.loads(line)
    return notice


def test_list_units_watch_json_shows_a_started_unit_within_a_second(
    fleet: Cluster, report_timings: dict[str, float]
) -> None:
    node = fleet.machines[0]
    watcher = Watcher.start(
        [f"--endpoint=http://{node.ip}:{API_PORT}", "list-units", "--watch", "-o", "json"]
    )
    try:
        watcher.wait_line(lambda line: _notice(line) == {"change": "synced"})
        fleet.fleetctl("start", unit_path("hello.service"))  # returns once it is active
        started = time.monotonic()

        def active(line: str) -> bool:
            notice = _notice(line)
            return notice.get("unit") == "hello.service" and notice.get("active_state") == "active"

        arrived, line = watcher.wait_line(active, timeout=10)
        late = arrived - started
        report_timings["watch shows the active unit after start returned"] = max(late, 0.0)
        assert late <= WATCH_BOUND, f"the watch showed it {late:.2f}s after the start"
        assert _notice(line)["change"] in ("added", "modified")
    finally:
        code, err = watcher.interrupt()
    assert (code, err) == (0, "")
