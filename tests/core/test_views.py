"""``ParsedBodies``: unit files by content hash, each parsed once, bounded."""

from __future__ import annotations

import pytest

from fleet.core.unitfile import UnitFile
from fleet.core.views import ParsedBodies

A = "[Service]\nExecStart=/bin/a\n"
B = "[Service]\nExecStart=/bin/b\n"
BAD = "[Service\n"


def test_known_bodies_are_not_parsed_again() -> None:
    cache = ParsedBodies(10)
    assert cache.known(["a", "b"]) == ({}, [], ["a", "b"])
    bodies, unparseable = cache.add({"a": A, "b": B, "x": BAD})
    assert (sorted(bodies), unparseable) == (["a", "b"], ["x"])
    assert cache.known(["b", "x", "a", "a", "new"]) == (
        {"a": UnitFile.parse(A), "b": UnitFile.parse(B)},
        ["x"],  # remembered as unparseable: not read nor parsed again either
        ["new"],
    )
    assert cache.parses == 3


def test_the_least_recently_used_body_is_dropped() -> None:
    cache = ParsedBodies(2)
    cache.add({"a": A})
    cache.add({"b": B})
    cache.known(["a"])  # a is used again: b is now the oldest
    cache.add({"c": A})
    assert len(cache) == 2
    assert cache.known(["a", "b", "c"])[2] == ["b"]


def test_capacity_must_hold_a_body() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ParsedBodies(0)
