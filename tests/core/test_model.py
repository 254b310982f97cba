"""The shared model: machine ids and dynamic metadata overlays."""

from __future__ import annotations

import pytest

from fleet.core.model import Machine

BASE = Machine("0123456789abcdef0123456789abcdef", "10.0.0.1", {"az": "a", "disk": "ssd"}, "1.0")


@pytest.mark.parametrize(
    ("dynamic", "expected"),
    [
        pytest.param({}, {"az": "a", "disk": "ssd"}, id="none"),
        pytest.param({"az": "b"}, {"az": "b", "disk": "ssd"}, id="dynamic-wins"),
        pytest.param({"rack": "7"}, {"az": "a", "disk": "ssd", "rack": "7"}, id="added"),
        pytest.param({"disk": None}, {"az": "a"}, id="tombstone-removes"),
        pytest.param({"nothing": None}, {"az": "a", "disk": "ssd"}, id="tombstone-of-absent"),
    ],
)
def test_overlaid_metadata(dynamic: dict[str, str | None], expected: dict[str, str]) -> None:
    machine = BASE.overlaid(dynamic)
    assert dict(machine.metadata) == expected
    assert (machine.id, machine.public_ip, machine.version) == (BASE.id, "10.0.0.1", "1.0")
    assert dict(BASE.metadata) == {"az": "a", "disk": "ssd"}  # the original is untouched


@pytest.mark.parametrize(
    ("wanted", "matches"),
    [
        pytest.param(BASE.id, True, id="full"),
        pytest.param(BASE.id[:8], True, id="short"),
        pytest.param(BASE.id[:7], False, id="too-short"),
        pytest.param("ffffffff", False, id="other"),
    ],
)
def test_matches_id(wanted: str, matches: bool) -> None:
    assert BASE.matches_id(wanted) is matches
