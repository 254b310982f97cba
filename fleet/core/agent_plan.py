"""The agent's reconciler as a pure function: desired units vs local units -> ordered actions.

:func:`plan_agent` compares what the cluster wants on this machine (scheduled
units plus the global units it runs, :func:`desired_units`) with what the agent
has locally and returns :class:`AgentAction` values in fleet's execution order:
unload, load, one daemon-reload, stop, start. Applying a plan
(:func:`apply_plan`) reaches the desired state, so re-planning returns nothing.
The agent shell executes the actions; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import assert_never

from fleet.core.checks import units_conflict
from fleet.core.model import DesiredState, Job, Machine
from fleet.core.requirements import Requirements
from fleet.core.scheduler import SchedUnit, global_units_for


class ActionKind(IntEnum):
    """What the agent does to one unit; the value is fleet's execution order."""

    UNLOAD = 1
    LOAD = 2
    RELOAD = 3  # systemd daemon-reload: once per pass, after loads/unloads
    STOP = 4
    START = 5


class AgentReason(StrEnum):
    NOT_LOADED = "unit scheduled here but not loaded"
    NOT_SCHEDULED = "unit loaded but not scheduled here"
    CHANGED = "unit file changed since it was loaded"
    WANT_LAUNCHED = "unit currently loaded but desired state is launched"
    WANT_LOADED = "unit currently launched but desired state is loaded"
    UNIT_FILES_CHANGED = "unit files were loaded or unloaded"
    PURGE = "purging agent"


@dataclass(frozen=True, slots=True)
class AgentAction:
    kind: ActionKind
    unit: str  # "" for RELOAD
    reason: AgentReason

    def __str__(self) -> str:
        return f"type={self.kind.name} unit={self.unit} reason={self.reason.value!r}"


@dataclass(frozen=True, slots=True)
class DesiredUnit:
    """A unit this machine should hold: its body ``hash`` and ``loaded``/``launched``."""

    hash: str
    state: DesiredState


@dataclass(frozen=True, slots=True)
class CurrentUnit:
    """A unit the agent holds locally: the hash of its file and what it did with it."""

    hash: str
    state: DesiredState


def plan_agent(
    desired: Mapping[str, DesiredUnit], current: Mapping[str, CurrentUnit]
) -> list[AgentAction]:
    """The actions that turn ``current`` into ``desired``, in execution order.

    A desired ``inactive`` unit counts as absent (fleet never keeps it loaded)."""
    actions: list[AgentAction] = []
    for name in sorted(set(desired) | set(current)):
        want = desired.get(name)
        if want is not None and want.state is DesiredState.INACTIVE:
            want = None
        have = current.get(name)
        if want is None:
            if have is not None:
                actions.append(AgentAction(ActionKind.UNLOAD, name, AgentReason.NOT_SCHEDULED))
            continue
        if have is None or have.hash != want.hash:
            if have is not None:
                actions.append(AgentAction(ActionKind.UNLOAD, name, AgentReason.CHANGED))
            reason = AgentReason.NOT_LOADED if have is None else AgentReason.CHANGED
            actions.append(AgentAction(ActionKind.LOAD, name, reason))
            if want.state is DesiredState.LAUNCHED:
                actions.append(AgentAction(ActionKind.START, name, AgentReason.WANT_LAUNCHED))
            continue
        if have.state is not DesiredState.LAUNCHED and want.state is DesiredState.LAUNCHED:
            actions.append(AgentAction(ActionKind.START, name, AgentReason.WANT_LAUNCHED))
        elif have.state is DesiredState.LAUNCHED and want.state is not DesiredState.LAUNCHED:
            actions.append(AgentAction(ActionKind.STOP, name, AgentReason.WANT_LOADED))
    if any(a.kind in (ActionKind.LOAD, ActionKind.UNLOAD) for a in actions):
        actions.append(AgentAction(ActionKind.RELOAD, "", AgentReason.UNIT_FILES_CHANGED))
    # Stable sort: an UNLOAD of a changed unit stays before its LOAD.
    actions.sort(key=lambda a: (a.kind, a.unit))
    return actions


def apply_action(
    current: dict[str, CurrentUnit], action: AgentAction, desired: Mapping[str, DesiredUnit]
) -> None:
    """What executing ``action`` successfully does to the agent's local view."""
    match action.kind:
        case ActionKind.UNLOAD:
            current.pop(action.unit, None)
        case ActionKind.LOAD:
            current[action.unit] = CurrentUnit(desired[action.unit].hash, DesiredState.LOADED)
        case ActionKind.START:
            current[action.unit] = CurrentUnit(current[action.unit].hash, DesiredState.LAUNCHED)
        case ActionKind.STOP:
            current[action.unit] = CurrentUnit(current[action.unit].hash, DesiredState.LOADED)
        case ActionKind.RELOAD:
            pass  # systemd re-read its files: nothing changes in the agent's view
        case unreachable:
            assert_never(unreachable)


def apply_plan(
    current: Mapping[str, CurrentUnit],
    desired: Mapping[str, DesiredUnit],
    actions: Iterable[AgentAction],
) -> dict[str, CurrentUnit]:
    """``current`` after every action succeeded (the fixed point :func:`plan_agent` aims at)."""
    out = dict(current)
    for action in actions:
        apply_action(out, action, desired)
    return out


def desired_units(
    machine: Machine,
    schedule: Mapping[str, Job],
    globals: Mapping[str, Job],
    global_reqs: Mapping[str, Requirements],
    scheduled_reqs: Mapping[str, Requirements] | None = None,
) -> dict[str, DesiredUnit]:
    """What this machine should hold: its scheduled units plus the global units
    whose requirements admit it (given its registry metadata).

    A global unit whose requirements are unknown (body not readable yet) is
    left out rather than guessed. A scheduled unit wins over a global one of
    the same name, and over a global unit it conflicts with (either way), whose
    requirements are in ``scheduled_reqs``: the global unit waits until the
    engine has moved the conflicting unit away (the engine never places a unit
    beside a global unit it conflicts with, but its view may lag a start)."""
    out: dict[str, DesiredUnit] = {}
    sched = [
        SchedUnit(name=job.name, hash=job.hash, desired=job.desired_state, requirements=reqs)
        for name, job in sorted(globals.items())
        if job.desired_state is not DesiredState.INACTIVE
        and (reqs := global_reqs.get(name)) is not None
    ]
    blockers = [
        (n, r)
        for n, r in (scheduled_reqs or {}).items()
        if n in schedule and schedule[n].desired_state is not DesiredState.INACTIVE
    ]
    for name in global_units_for(machine, sched):
        globs = global_reqs[name].conflicts
        if any(units_conflict(name, globs, n, r.conflicts) for n, r in blockers):
            continue
        job = globals[name]
        out[name] = DesiredUnit(job.hash, job.desired_state)
    for name, job in schedule.items():
        if job.desired_state is not DesiredState.INACTIVE:
            out[name] = DesiredUnit(job.hash, job.desired_state)
    return out
