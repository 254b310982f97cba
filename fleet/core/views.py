"""Read models of units as users see them: one :class:`UnitInfo` per registry unit.

The unit use cases (:mod:`fleet.units`, behind both the API server and
fleetctl's etcd driver) build every unit listing here, from what the registry
holds (jobs, bodies, the engine's schedule, the agents' published states and
the engine's unplaceable reasons), so that desired state, current state and
target machine mean the same thing everywhere. A stored
body that does not parse counts as missing (:func:`parse_bodies`): its unit is
left out, like a job whose body was never written; :class:`ParsedBodies`
keeps what each content hash parsed to, so a listing parses only new bodies.
Pure: the caller does the reading (and the logging).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fleet.core.model import DesiredState, Job, UnitState
from fleet.core.outcome import Outcome, launch_outcome
from fleet.core.unitfile import UnitFile
from fleet.errors import InvalidInput


@dataclass(frozen=True)
class UnitInfo:
    """One registry unit: its file, desired and current state and where it runs.

    ``current`` is None for global units (fleet never derives one for them);
    ``machine_id`` is the engine's placement (None when unscheduled or global);
    ``reason`` is why the engine could not place the unit (feature B1);
    ``failure`` why it failed where it was placed (its launch outcome, or the
    agent's error), None while nothing failed.
    """

    name: str
    unit: UnitFile
    hash: str
    desired: DesiredState
    current: DesiredState | None
    machine_id: str | None
    is_global: bool
    reason: str | None
    failure: str | None = None

    @property
    def description(self) -> str:
        return self.unit.description or ""


def parse_bodies(texts: Mapping[str, str]) -> tuple[dict[str, UnitFile], list[str]]:
    """Parse stored bodies (hash -> text): the ones that parse, and the sorted
    hashes of those that do not (left out, so their units are hidden)."""
    bodies: dict[str, UnitFile] = {}
    unparseable: list[str] = []
    for digest, text in sorted(texts.items()):
        try:
            bodies[digest] = UnitFile.parse(text)
        except InvalidInput:
            unparseable.append(digest)
    return bodies, unparseable


class ParsedBodies:
    """Unit files parsed from stored bodies, by content hash, at most ``capacity``
    of them (the least recently used dropped first).

    A body is stored under the hash of its content, so what a hash parses to
    never changes: a listing parses only the bodies it has not seen, and need
    not even read the others. A body that does not parse is remembered as such.
    ``parses`` counts the bodies parsed so far.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.parses = 0
        self._units: OrderedDict[str, UnitFile | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._units)

    def known(self, hashes: Iterable[str]) -> tuple[dict[str, UnitFile], list[str], list[str]]:
        """Of ``hashes``: the parsed bodies known, the sorted hashes known not to
        parse, and the sorted hashes never seen (the caller reads and :meth:`add` s them)."""
        bodies: dict[str, UnitFile] = {}
        unparseable: list[str] = []
        unseen: list[str] = []
        for digest in sorted(set(hashes)):
            if digest not in self._units:
                unseen.append(digest)
                continue
            self._units.move_to_end(digest)
            unit = self._units[digest]
            if unit is None:
                unparseable.append(digest)
            else:
                bodies[digest] = unit
        return bodies, unparseable, unseen

    def add(self, texts: Mapping[str, str]) -> tuple[dict[str, UnitFile], list[str]]:
        """Parse and remember stored bodies (hash -> text), as :func:`parse_bodies`."""
        bodies, unparseable = parse_bodies(texts)
        self.parses += len(texts)
        for digest in sorted(texts):
            self._units[digest] = bodies.get(digest)
            self._units.move_to_end(digest)
        while len(self._units) > self.capacity:
            self._units.popitem(last=False)
        return bodies, unparseable


def unit_is_global(name: str, unit: UnitFile) -> bool:
    """Whether ``[X-Fleet] Global`` makes this unit global.

    A stored unit whose requirements no longer validate is shown as
    non-global rather than hiding it from listings.
    """
    from fleet.core.requirements import validate_unit  # keeps import cycles out

    if not any(o.section == "X-Fleet" and o.name == "Global" for o in unit.options):
        return False  # nothing else makes a unit global: no need to validate it all
    try:
        return validate_unit(name, unit).is_global
    except InvalidInput:
        return False


def current_state(name: str, machine_id: str | None, states: Iterable[UnitState]) -> DesiredState:
    """fleet's currentState of a non-global unit.

    ``inactive`` unless the unit is scheduled and the scheduled machine's agent
    published a state for it; then whatever that agent says it did
    (``loaded`` or ``launched``).
    """
    if machine_id is None:
        return DesiredState.INACTIVE
    for state in states:
        if state.name == name and state.machine_id == machine_id:
            return state.fleet_state
    return DesiredState.INACTIVE


def failure_reason(
    desired: DesiredState, hash: str, machine_id: str | None, states: Iterable[UnitState]
) -> str | None:
    """Why the unit (with content ``hash``) failed on its machine (``machine_id``;
    every machine for a global unit, None): the failed outcome of a launch the
    agent made, or the agent's error. None when nothing failed. States of other
    content, or of a unit the agent did not launch, tell nothing about this one."""
    if desired is DesiredState.INACTIVE:
        return None
    found = []
    for state in sorted(states, key=lambda s: s.machine_id):
        if machine_id is not None and state.machine_id != machine_id:
            continue
        if state.hash != hash:
            continue
        launched = state.fleet_state is DesiredState.LAUNCHED
        if (desired is DesiredState.LAUNCHED and launched) or state.error:
            verdict = launch_outcome(state)
            if verdict.outcome is Outcome.FAILED:
                found.append(f"failed on {state.machine_id[:8]}: {verdict.detail}")
    return "; ".join(found) or None


def build_unit_infos(
    jobs: Iterable[Job],
    bodies: Mapping[str, UnitFile],
    schedule: Mapping[str, str],
    states: Sequence[UnitState],
    reasons: Mapping[str, str],
) -> list[UnitInfo]:
    """Join the registry's pieces into one sorted list of :class:`UnitInfo`.

    A job whose body is missing (a torn write from an old client) or did not
    parse (see :func:`parse_bodies`) is left out: without a unit file there is
    nothing meaningful to show or schedule.
    """
    by_unit: dict[str, list[UnitState]] = {}
    for state in states:
        by_unit.setdefault(state.name, []).append(state)
    infos: list[UnitInfo] = []
    for job in jobs:
        unit = bodies.get(job.hash)
        if unit is None:
            continue
        is_global = unit_is_global(job.name, unit)
        machine_id = None if is_global else schedule.get(job.name)
        current = (
            None if is_global else current_state(job.name, machine_id, by_unit.get(job.name, ()))
        )
        infos.append(
            UnitInfo(
                name=job.name,
                unit=unit,
                hash=job.hash,
                desired=job.desired_state,
                current=current,
                machine_id=machine_id,
                is_global=is_global,
                reason=reasons.get(job.name) or None,
                failure=failure_reason(
                    job.desired_state,
                    job.hash,
                    None if is_global else (machine_id or ""),
                    by_unit.get(job.name, ()),
                ),
            )
        )
    infos.sort(key=lambda info: info.name)
    return infos
