"""One real systemd machine (nspawn) for the systemd adapter tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.cluster import nodes
from tests.systemd.support import NodeLayout, NodeUnitDir, boot_one, node_unit_dir

# Distinct from every other test cluster so sessions can run side by side.
LAYOUT = NodeLayout(Path("/tmp/fl-sysd"), "sysd", "10.249.0", "sysdbr0")


@pytest.fixture(scope="session")
def systemd_node() -> Iterator[nodes.Node]:
    yield from boot_one(LAYOUT)


@pytest.fixture
def unit_dir(systemd_node: nodes.Node, request: pytest.FixtureRequest) -> Iterator[NodeUnitDir]:
    yield from node_unit_dir(systemd_node, re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60])
