"""The engine leader's side of drains: which drains need a step, and one step of each.

A drain is asked for by a client (a request in the registry) and driven here,
by whichever engine leads, one step per pass (:mod:`fleet.core.drain` has the
rules). This module picks the drains still under way from the view, reads the
published states of their units in flight (only those: a drain costs nothing
per unit of the cluster), and hands the pass the evictions to plan with and the
progress to write, fenced, with the pass's schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleet.core.drain import DrainPass, DrainTracker
from fleet.core.maintenance import DrainRequest, DrainStatus
from fleet.core.model import UnitState
from fleet.core.scheduler import Plan, Snapshot
from fleet.engine.view import ClusterState

__all__ = ["DRAIN_TICK", "DrainCoordinator", "DrainWork"]

# While a drain is under way the engine looks again this often: a moved unit's
# health is read from the agents' published states, which do not wake the engine.
DRAIN_TICK = 0.2


@dataclass(frozen=True, slots=True)
class DrainWork:
    """A drain that needs a step: its machine, request and last written progress."""

    machine_id: str
    request: DrainRequest
    status: DrainStatus | None


class DrainCoordinator:
    """Steps the drains of the view; keeps the tracker's memory between passes."""

    def __init__(self) -> None:
        self._tracker = DrainTracker()

    def reset(self) -> None:
        """Leadership changed hands: health timers start over (they are re-measured)."""
        self._tracker = DrainTracker()

    @staticmethod
    def under_way(view: ClusterState) -> list[DrainWork]:
        out = []
        for machine_id, request in sorted(view.drains.items()):
            status = view.drain_status.get(machine_id)
            if status is not None and status.started == request.started and status.phase.final:
                continue
            out.append(DrainWork(machine_id, request, status))
        return out

    @staticmethod
    def in_flight(work: Sequence[DrainWork]) -> list[str]:
        names: set[str] = set()
        for item in work:
            if item.status is not None and item.status.started == item.request.started:
                names.update(item.status.in_flight())
        return sorted(names)

    def step(
        self,
        work: Sequence[DrainWork],
        snapshot: Snapshot,
        states: Sequence[UnitState],
        now: float,
        planner: Callable[[Snapshot], Plan],
    ) -> tuple[DrainPass, dict[str, DrainStatus]]:
        """One step of every drain in ``work``: the pass's evictions (and plan) and
        the progress that changed."""
        by_name: dict[str, list[UnitState]] = {}
        for state in states:
            by_name.setdefault(state.name, []).append(state)
        drain_pass = DrainPass(snapshot, by_name, now, planner)
        changed: dict[str, DrainStatus] = {}
        for item in work:
            status = self._tracker.step(item.machine_id, item.request, item.status, drain_pass)
            if status != item.status:
                changed[item.machine_id] = status
            if status.phase.final:
                self._tracker.forget(item.machine_id)
        return drain_pass, changed
