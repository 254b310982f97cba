"""fleet's --replace matrix: which command may overwrite a unit in which desired state."""

from __future__ import annotations

import pytest

from fleet.core.model import DesiredState
from fleetctl.replace import ReplaceVerdict, replace_verdict, verdict_message

INACT, L, X = DesiredState.INACTIVE, DesiredState.LOADED, DesiredState.LAUNCHED
R, REF = ReplaceVerdict.REPLACE, ReplaceVerdict.REFUSED

MATRIX = [
    ("submit", INACT, R),
    ("submit", L, REF),
    ("submit", X, REF),
    ("load", INACT, R),
    ("load", L, R),
    ("load", X, REF),
    ("start", INACT, R),
    ("start", L, R),
    ("start", X, R),
]


@pytest.mark.parametrize(
    ("command", "desired", "verdict"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in MATRIX],
)
def test_different_content(command: str, desired: DesiredState, verdict: ReplaceVerdict) -> None:
    assert replace_verdict(command, desired, "new", "old") is verdict


@pytest.mark.parametrize(
    ("command", "desired"), [pytest.param(c, d, id=f"{c}-{d}") for c, d, _ in MATRIX]
)
def test_same_content_is_never_replaced(command: str, desired: DesiredState) -> None:
    assert replace_verdict(command, desired, "same", "same") is ReplaceVerdict.SAME


def test_messages_are_fleets() -> None:
    assert verdict_message(ReplaceVerdict.SAME, "a.service", INACT) == (
        "Found same Unit(a.service) in Registry, nothing to do"
    )
    assert verdict_message(ReplaceVerdict.REFUSED, "a.service", X) == (
        "Warning: can not replace Unit(a.service) in state 'launched', use the appropriate command"
    )
