"""Use cases of machine maintenance: cordon, uncordon, drain, pause, progress.

The API routes and fleetctl's etcd driver both call these, so a request is
checked the same way whichever road it takes: the machine must be in the
cluster, a drain's numbers must make sense, and asking for a drain that is
still under way resumes it (its progress is kept) instead of starting over;
asking again once it has finished starts a new round, in which units that could
not move before are tried again. The engine leader does the moving
(:mod:`fleet.engine.drains`); nothing here waits for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from fleet.core.maintenance import DEFAULT_MIN_HEALTHY, Cordon, DrainRequest, DrainStatus
from fleet.errors import InvalidInput, NotFound
from fleet.ports import ClusterView, MaintenanceStore

__all__ = [
    "MAX_PARALLEL",
    "MAX_REASON",
    "DrainOptions",
    "Maintenance",
    "MaintenanceRegistry",
    "cordon",
    "drain",
    "maintenance_of",
    "pause_drain",
    "uncordon",
]

MAX_REASON = 1024  # characters of a cordon reason
MAX_PARALLEL = 1000


class MaintenanceRegistry(ClusterView, MaintenanceStore, Protocol):
    """What these use cases need: the live machines and the maintenance records."""


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A machine's cordon, drain request and the engine's progress on it."""

    machine_id: str
    cordon: Cordon | None
    request: DrainRequest | None
    status: DrainStatus | None

    @property
    def current_status(self) -> DrainStatus | None:
        """The progress of the current request only (None before the engine's first step)."""
        if self.request is None or self.status is None:
            return None
        return self.status if self.status.started == self.request.started else None


async def _live(store: MaintenanceRegistry, machine_id: str) -> None:
    if not any(m.id == machine_id for m in await store.list_machines()):
        raise NotFound(f"machine {machine_id} is not in the cluster")


def _reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) > MAX_REASON or any(c in reason for c in "\n\r\0"):
        raise InvalidInput(f"a cordon reason is one line of at most {MAX_REASON} characters")
    return reason


async def cordon(store: MaintenanceRegistry, machine_id: str, reason: str, now: float) -> None:
    """Cordon a live machine (again: the new reason replaces the old one)."""
    text = _reason(reason)
    await _live(store, machine_id)
    await store.set_cordon(machine_id, Cordon(text, now))


async def uncordon(store: MaintenanceRegistry, machine_id: str) -> bool:
    """Lift a cordon and end the machine's drain; False if it was not cordoned.
    A machine that has left the cluster can be uncordoned too."""
    current = await maintenance_of(store, machine_id)
    if current.cordon is None and current.request is None and current.status is None:
        return False
    await store.set_cordon(machine_id, None)
    return True


@dataclass(frozen=True, slots=True)
class DrainOptions:
    """How to drain: ``max_parallel`` units in flight, each ``min_healthy`` seconds
    active elsewhere before the next moves; after ``give_up_after`` seconds
    (``--timeout``; None: never) no new move starts."""

    max_parallel: int = 1
    min_healthy: float = DEFAULT_MIN_HEALTHY
    give_up_after: float | None = None
    include_global: bool = False
    reason: str = ""


async def drain(
    store: MaintenanceRegistry, machine_id: str, now: float, options: DrainOptions
) -> DrainRequest:
    """Cordon the machine and ask the engine to drain it; resume a drain still under way."""
    max_parallel, min_healthy = options.max_parallel, options.min_healthy
    give_up_after, include_global, reason = (
        options.give_up_after,
        options.include_global,
        options.reason,
    )
    if not 1 <= max_parallel <= MAX_PARALLEL:
        raise InvalidInput(f"--max-parallel must be between 1 and {MAX_PARALLEL}")
    if not math.isfinite(min_healthy) or min_healthy < 0:
        raise InvalidInput("--min-healthy-time must not be negative")
    if give_up_after is not None and (not math.isfinite(give_up_after) or give_up_after <= 0):
        raise InvalidInput("--timeout must be positive")
    text = _reason(reason or "drain")
    await _live(store, machine_id)
    current = await maintenance_of(store, machine_id)
    started = now
    progress = current.current_status
    if current.request is not None and (progress is None or not progress.phase.final):
        started = current.request.started  # still under way: resume it
    request = DrainRequest(max_parallel, min_healthy, give_up_after, include_global, False, started)
    await store.request_drain(machine_id, request, Cordon(text, now))
    return request


async def pause_drain(store: MaintenanceRegistry, machine_id: str) -> bool:
    """Stop starting new moves (those under way finish); False if no drain was asked."""
    return await store.set_drain_paused(machine_id, True)


async def maintenance_of(store: MaintenanceRegistry, machine_id: str) -> Maintenance:
    cordon_, request, status = await store.get_maintenance(machine_id)
    return Maintenance(machine_id, cordon_, request, status)
