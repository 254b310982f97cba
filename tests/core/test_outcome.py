"""The outcome of a launch, from the state an agent published (no I/O)."""

from __future__ import annotations

import pytest

from fleet.core.model import DesiredState, UnitState
from fleet.core.outcome import Outcome, launch_outcome

W, R, X, F = Outcome.WAITING, Outcome.RUNNING, Outcome.EXITED, Outcome.FAILED
NO_SPACE = "load failed: no space left on device"

# id: (active, sub, systemd Result, start job result, agent error) -> (outcome, detail)
CASES = {
    "running": (("active", "running", "success", "done", ""), (R, "active/running")),
    "remain-after-exit": (("active", "exited", "success", "done", ""), (R, "active/exited")),
    "ran-and-exited": (("inactive", "dead", "success", "done", ""), (X, "exited successfully")),
    "queued-not-run": (("inactive", "dead", "success", "", ""), (W, "inactive/dead")),
    "activating": (("activating", "start", "", "", ""), (W, "activating/start")),
    "failed": (("failed", "failed", "exit-code", "done", ""), (F, "Result=exit-code")),
    "oneshot-failed": (("failed", "failed", "exit-code", "failed", ""), (F, "Result=exit-code")),
    "crash-loop": (
        ("activating", "auto-restart", "exit-code", "done", ""),
        (F, "Result=exit-code, systemd keeps restarting it"),
    ),
    "restart-after-success": (
        ("activating", "auto-restart", "success", "done", ""),
        (W, "activating/auto-restart"),
    ),
    "dependency": (("inactive", "dead", "", "dependency", ""), (F, "start job dependency")),
    "agent-error": (("inactive", "dead", "", "", NO_SPACE), (F, NO_SPACE)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_launch_outcome(case: str) -> None:
    (active, sub, result, start, error), (outcome, detail) = CASES[case]
    state = UnitState(
        "a.service", "m1", "loaded", active, sub, "0" * 40, DesiredState.LAUNCHED,
        result, start, error,
    )  # fmt: skip
    verdict = launch_outcome(state)
    assert (verdict.outcome, verdict.detail) == (outcome, detail)
    assert verdict.final is (outcome is not Outcome.WAITING)
