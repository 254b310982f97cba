"""Shared fixtures. ``etcd`` is one real etcd server per test session; every
test gets its own key prefix (``etcd_prefix``) so tests never see each other."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.cluster.etcd import EtcdProcess

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdProcess]:
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: these tests need Debian's etcd-server (see .ci/run)")
    # The session's etcd keeps its data on tmpfs: a shared CI disk can stall an fsync
    # for seconds, and these tests are about fleet, not about that disk (a stalled
    # fsync turned one request of the API fuzz test into a 503 on CI). Fault tests
    # that need a member's disk behaviour run their own members (fleet-cluster).
    shm = Path("/dev/shm")
    with (
        tempfile.TemporaryDirectory(prefix="fleet-etcd-", dir=shm if shm.is_dir() else None) as d,
        EtcdProcess(data_dir=Path(d)) as server,
    ):
        yield server


@pytest.fixture
def etcd_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test, in the form fleet's etcd_key_prefix takes."""
    return f"/fleet-test/{next(_prefixes)}-{request.node.name[:40]}/"
