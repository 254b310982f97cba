"""What became of a launched unit, judged from the state its agent published.

A launch ends in one of four ways: it is running, it ran and exited
successfully (a oneshot, or a service whose main process ended with success),
it failed (systemd says ``failed``, systemd keeps restarting it after
failures, or the agent could not act on it), or it is still on its way.
fleetctl's blocking commands, the API's unit views and list-unit-files all use
this one judgement, so every place tells the same story.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleet.core.model import UnitState

# Results systemd gives a unit that did not fail.
_GOOD_RESULTS = frozenset({"", "success"})
QUEUED = "queued"
"""``start_result`` while the agent's start job has not finished."""


class Outcome(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    EXITED = "exited"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    detail: str  # a phrase for the user: "Result=exit-code", "restarting after failures", ...

    @property
    def final(self) -> bool:
        return self.outcome is not Outcome.WAITING


def launch_outcome(state: UnitState) -> Verdict:
    """The outcome of ``state``'s unit, which its agent was told to launch."""
    if state.error:
        return Verdict(Outcome.FAILED, state.error)
    if state.active_state == "active":
        return Verdict(Outcome.RUNNING, f"{state.active_state}/{state.sub_state}")
    if state.start_result == QUEUED:
        # The agent's start is still under way: what systemd shows is from before.
        return Verdict(Outcome.WAITING, f"{state.active_state}/{state.sub_state}, starting")
    if state.active_state == "failed":
        return Verdict(Outcome.FAILED, f"Result={state.result or 'unknown'}")
    if state.sub_state == "auto-restart" and state.result not in _GOOD_RESULTS:
        return Verdict(Outcome.FAILED, f"Result={state.result}, systemd keeps restarting it")
    if state.start_result and state.start_result != "done":
        return Verdict(Outcome.FAILED, f"start job {state.start_result}")
    if (
        state.start_result == "done"
        and state.active_state == "inactive"
        and state.result in _GOOD_RESULTS
    ):
        return Verdict(Outcome.EXITED, "exited successfully")
    return Verdict(Outcome.WAITING, f"{state.active_state}/{state.sub_state}")
