"""Machine maintenance records: a cordon, a drain request and a drain's progress.

A **cordon** keeps the scheduler from placing anything new on a machine; what
already runs there stays. A **drain** cordons a machine and moves its units
elsewhere a few at a time, each one active (and stable) on its new machine
before the next starts moving. Clients write the :class:`DrainRequest`; the
engine leader drives the drain and writes its :class:`DrainStatus`, so a drain
survives the client that asked for it and a change of engine leader. The rules
of one drain step are in :mod:`fleet.core.drain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "DEFAULT_MIN_HEALTHY",
    "Cordon",
    "DrainPhase",
    "DrainRequest",
    "DrainStatus",
    "MoveState",
    "UnitMove",
]

DEFAULT_MIN_HEALTHY = 5.0  # seconds a moved unit must stay active before the next moves


@dataclass(frozen=True, slots=True)
class Cordon:
    """A machine nothing new is placed on; ``since`` is wall-clock seconds."""

    reason: str = ""
    since: float = 0.0

    def text(self) -> str:
        return f"cordoned ({self.reason})" if self.reason else "cordoned"


@dataclass(frozen=True, slots=True)
class DrainRequest:
    """What a client asked for. ``started`` (wall-clock seconds) identifies the
    request: a drain asked for again starts a new round (units that could not
    move are tried again); ``timeout`` is counted from it (None: no limit)."""

    max_parallel: int = 1
    min_healthy: float = DEFAULT_MIN_HEALTHY
    timeout: float | None = None
    include_global: bool = False
    paused: bool = False
    started: float = 0.0


class MoveState(StrEnum):
    """Where one unit of a drained machine stands."""

    MOVING = "moving"  # taken off the drained machine, not yet healthy elsewhere
    MOVED = "moved"  # active on its new machine for the minimum healthy time
    PINNED = "pinned"  # MachineID names the drained machine: left running there
    STUCK = "stuck"  # no other machine can take it: left running there
    FAILED = "failed"  # moved, but did not become healthy on its new machine


class DrainPhase(StrEnum):
    """A drain as a whole. The last four are final; ``exit_code`` is fleetctl's."""

    DRAINING = "draining"
    PAUSED = "paused"
    DONE = "done"  # every unit that could move is active elsewhere
    INCOMPLETE = "incomplete"  # some units could not move (pinned or stuck)
    FAILED = "failed"  # some moved units did not become healthy
    TIMED_OUT = "timed-out"

    @property
    def final(self) -> bool:
        return self not in (DrainPhase.DRAINING, DrainPhase.PAUSED)

    @property
    def exit_code(self) -> int:
        return _EXIT[self]


_EXIT = {
    DrainPhase.DRAINING: 0,
    DrainPhase.PAUSED: 0,
    DrainPhase.DONE: 0,
    DrainPhase.INCOMPLETE: 2,
    DrainPhase.FAILED: 1,
    DrainPhase.TIMED_OUT: 1,
}


@dataclass(frozen=True, slots=True)
class UnitMove:
    """One unit's move: its state, the machine it went to (if any), why."""

    state: MoveState
    to: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DrainStatus:
    """The engine's account of one drain, for the request ``started`` names."""

    phase: DrainPhase
    started: float
    units: Mapping[str, UnitMove] = field(default_factory=dict)
    detail: str = ""

    def in_flight(self) -> list[str]:
        return [n for n, m in self.units.items() if m.state is MoveState.MOVING]
