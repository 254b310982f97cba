"""The fault suite: one test per fault, each injected on real systemd machines.

Every test here names the fault it injects and asserts, on systemd's own view
inside the machines, what docs/faults.md promises for it: no unit lost, no unit
running twice beyond the documented partition policy, no restart where none is
promised, and convergence within a stated time. Each test boots a private
cluster (it breaks machines, etcd members or the network), so the tests do not
share state; the subnets ``10.251.130.0`` to ``10.251.169.0`` belong to this tier
(one block of 8 per module family, see each module's ``fresh`` fixture).
"""

from __future__ import annotations

import pytest

from tests.functional.conftest import pytest_terminal_summary, report_timings

__all__ = ["pytest_terminal_summary", "report_timings"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.functional)
