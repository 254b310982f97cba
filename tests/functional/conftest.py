"""Fixtures for the functional tests: real systemd machines running fleetd.

``cluster`` is one 3-machine cluster for the whole session (booting is cheap,
but fleetd registration is not free); tests must leave it as they found it
(destroy their units). A test that needs its own machine count, or breaks
machines, asks ``cluster_factory(n)`` for a fresh cluster that is removed when
the test ends. Boot and teardown timings are reported at the end of the run, with
whatever a test put in ``report_timings``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.functional.cluster import Cluster, layout_for
from tests.functional.unitviews import destroy_all

_TIMINGS: list[tuple[str, dict[str, float]]] = []
_slots = itertools.count(1)


def _check_host() -> None:
    if os.geteuid() != 0:
        pytest.fail("functional tests need root (systemd-nspawn, netns, mounts)")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    _check_host()
    c = Cluster.start(3, layout_for(0))
    try:
        yield c
    finally:
        c.stop()
        _TIMINGS.append(("session cluster (3 machines)", c.timings))


@pytest.fixture
def fleet(cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster, with no units before the test and none after it."""
    destroy_all(cluster)
    try:
        yield cluster
    finally:
        destroy_all(cluster)


@pytest.fixture
def cluster_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Cluster]]:
    """``cluster_factory(n, **Cluster.start options)``: a fresh cluster for this test only."""
    _check_host()
    made: list[Cluster] = []

    def make(count: int = 3, **options: Any) -> Cluster:
        c = Cluster.start(count, layout_for(next(_slots) % 30 or 1), **options)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop()
            _TIMINGS.append((request.node.name, c.timings))


@pytest.fixture
def report_timings(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    """A dict for a test's own timings (seconds), reported beside the clusters'."""
    timings: dict[str, float] = {}
    try:
        yield timings
    finally:
        if timings:
            _TIMINGS.append((request.node.name, timings))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TIMINGS:
        return
    terminalreporter.section("fleet-cluster timings")
    for label, t in _TIMINGS:
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in t.items())
        terminalreporter.write_line(f"{label}: {parts}")
