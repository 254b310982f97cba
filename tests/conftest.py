"""Shared fixtures. ``etcd`` is one real etcd server per test session; every
test gets its own key prefix (``etcd_prefix``) so tests never see each other."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator

import pytest

from fleet.cluster.etcd import EtcdProcess

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdProcess]:
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: these tests need Debian's etcd-server (see .ci/run)")
    with EtcdProcess() as server:
        yield server


@pytest.fixture
def etcd_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test, in the form fleet's etcd_key_prefix takes."""
    return f"/fleet-test/{next(_prefixes)}-{request.node.name[:40]}/"
