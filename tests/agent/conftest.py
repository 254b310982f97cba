"""One real systemd machine (nspawn), booted only for the agent tests that ask for it
(test_agent.py); the logic tests run on the in-memory systemd (tests/agent/support.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.cluster import nodes
from tests.systemd.support import NodeLayout, NodeUnitDir, boot_one, node_unit_dir

# Distinct from tests/systemd's machine and from every other test cluster.
LAYOUT = NodeLayout(Path("/tmp/fl-agt"), "agt", "10.248.0", "agtbr0")


@pytest.fixture(scope="session")
def agent_node() -> Iterator[nodes.Node]:
    yield from boot_one(LAYOUT)


@pytest.fixture
def unit_dir(agent_node: nodes.Node, request: pytest.FixtureRequest) -> Iterator[NodeUnitDir]:
    yield from node_unit_dir(agent_node, re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60])
