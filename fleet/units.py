"""Use cases on units over the UnitStore and ClusterView ports: the one home of unit rules.

The API routes and fleetctl's etcd driver both go through these functions, so
a unit is checked, written and shown the same way whichever road it takes to
the registry: its name is validated, a template is never given a desired state
above ``inactive`` (:func:`fleet.core.names.check_activation`), its file's
``[X-Fleet]`` requirements are validated before any write
(:func:`fleet.core.requirements.validate_unit`), its canonical text must fit
fleet's size limit (:func:`fleet.core.limits.check_unit_size`, so etcd never
refuses the write) and its requirements decide, here and nowhere
else, whether the registry keeps the unit in its global-units mirror; unit
views are joined by :func:`fleet.core.views.build_unit_infos`. A stored body
that no longer parses is logged and its unit left out of every view (the same
as a job whose body is missing), rather than failing the whole listing: one
corrupt unit must not hide every other unit from every user, fleet itself
skipped such units, and fleet's wire format has no way to show a unit without
its file; the unit can still be destroyed, or replaced through the API, by name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Protocol

from fleet.core.limits import check_unit_size
from fleet.core.model import (
    DesiredState,
    Job,
    PlacementReason,
    UnitState,
    machine_set_fingerprint,
)
from fleet.core.names import check_activation, validate_unit_name
from fleet.core.requirements import Requirements, validate_unit
from fleet.core.unitfile import UnitFile
from fleet.core.views import ParsedBodies, UnitInfo, build_unit_infos
from fleet.errors import AlreadyExists
from fleet.ports import ClusterView, EventStore, MaintenanceStore, UnitStore

log = logging.getLogger(__name__)

# Parsed unit files a long-lived reader (the API server) keeps: above the unit
# count fleet is measured at (10,000), as a listing scanning more distinct
# bodies than the cache holds would find none of them.
BODY_CACHE_SIZE = 16_384


class Registry(UnitStore, ClusterView, MaintenanceStore, EventStore, Protocol):
    """What the API needs: the unit store, the cluster's read side, machine
    maintenance (:mod:`fleet.maintenance`) and the event history (:mod:`fleet.events`)."""


class Put(Enum):
    """What :func:`put_unit` did (the API answers 201 for the first two, 204 else)."""

    CREATED = "created"
    REPLACED = "replaced"
    DESIRED_STATE_SET = "desired state set"


# --- writes ------------------------------------------------------------------------------


def check_unit(name: str, unit: UnitFile, desired: DesiredState) -> Requirements:
    """Every rule a unit must pass before it is written; its parsed requirements.

    fleetctl runs it on every unit of a command before the first write, so a
    batch is refused whole; the writes below run it again for every other caller.
    """
    requirements = validate_unit(name, unit)  # the name first: messages name the unit
    check_unit_size(name, unit)
    check_activation(name, desired)
    return requirements


async def create_unit(
    store: UnitStore, name: str, unit: UnitFile, desired: DesiredState
) -> Requirements:
    """Create a new unit; AlreadyExists if one of that name exists."""
    requirements = check_unit(name, unit, desired)
    await store.create_unit(
        name, unit.serialize(), unit.hash, desired, is_global=requirements.is_global
    )
    return requirements


async def replace_unit(
    store: UnitStore, name: str, unit: UnitFile, desired: DesiredState
) -> Requirements:
    """Create or overwrite a unit's file and desired state in one write."""
    requirements = check_unit(name, unit, desired)
    await store.replace_unit(
        name, unit.serialize(), unit.hash, desired, is_global=requirements.is_global
    )
    return requirements


async def set_desired_state(store: UnitStore, name: str, desired: DesiredState) -> None:
    """NotFound if the unit does not exist."""
    check_activation(name, desired)
    await store.set_desired_state(name, desired)


async def set_desired_states(store: UnitStore, desired: Mapping[str, DesiredState]) -> None:
    """Several units' desired states in one write, so the engine judges them together
    (a unit that follows another is never seen without the unit it follows)."""
    for name, state in desired.items():
        check_activation(name, state)
    if desired:
        await store.set_desired_states(desired)


async def destroy_unit(store: UnitStore, name: str) -> bool:
    """False if there was no such unit."""
    validate_unit_name(name)
    return await store.destroy_unit(name)


async def put_unit(
    store: UnitStore, name: str, unit: UnitFile | None, desired: DesiredState | None
) -> Put:
    """fleet's create-or-update of one unit (the API's ``PUT /units/<name>``).

    A file that differs from the stored one (or a new unit) is written with
    ``desired`` (default ``inactive``); otherwise only the desired state is set.
    AlreadyExists, with fleet's messages, for a new unit without a file or an
    existing unit with nothing to change.
    """
    validate_unit_name(name)
    existing = await store.get_job(name)
    if existing is None and unit is None:
        raise AlreadyExists("unit does not exist and options field empty")
    if unit is not None and (existing is None or existing.hash != unit.hash):
        target = desired or DesiredState.INACTIVE
        if existing is None:
            await create_unit(store, name, unit, target)
            return Put.CREATED
        await replace_unit(store, name, unit, target)
        return Put.REPLACED
    if desired is None:
        raise AlreadyExists("must provide DesiredState to update existing unit")
    await set_desired_state(store, name, desired)
    return Put.DESIRED_STATE_SET


# --- views -------------------------------------------------------------------------------


async def list_units(
    registry: Registry, *, revision: int = 0, bodies: ParsedBodies | None = None
) -> list[UnitInfo]:
    """Every unit as users see it, sorted by name: all of it read at ``revision``
    (the current one when 0) so that the views join one consistent snapshot, and
    bodies parsed only when ``bodies`` has not seen their hash."""
    revision = revision or await registry.pin_revision()
    jobs = await registry.list_jobs(revision)
    return await _infos(registry, jobs, revision, _cache(bodies))


async def get_unit(
    registry: Registry, name: str, bodies: ParsedBodies | None = None
) -> UnitInfo | None:
    """One unit's view; None if it does not exist (or its body is unusable)."""
    validate_unit_name(name)
    job = await registry.get_job(name)
    if job is None:
        return None
    infos = await _infos(registry, [job], 0, _cache(bodies))
    return infos[0] if infos else None


async def list_unit_states(
    view: ClusterView,
    machine_id: str | None = None,
    unit_name: str | None = None,
    *,
    revision: int = 0,
) -> list[UnitState]:
    """Published unit states sorted by (unit, machine), narrowed by exact
    ``machine_id`` and ``unit_name`` when given (empty means no filter, as in fleet)."""
    return [
        state
        for state in await view.list_unit_states(revision)
        if (not machine_id or state.machine_id == machine_id)
        and (not unit_name or state.name == unit_name)
    ]


async def _infos(
    registry: Registry, jobs: Sequence[Job], revision: int, cache: ParsedBodies
) -> list[UnitInfo]:
    if not jobs:
        return []
    bodies, unparseable, unseen = cache.known(job.hash for job in jobs)
    schedule, states, reasons, texts = await asyncio.gather(
        registry.list_schedule(revision),
        registry.list_unit_states(revision),
        registry.list_reasons(revision),
        registry.get_unit_bodies(unseen, revision) if unseen else _no_bodies(),
    )
    parsed, newly_unparseable = cache.add(texts)
    bodies.update(parsed)
    for digest in sorted([*unparseable, *newly_unparseable]):
        names = ", ".join(job.name for job in jobs if job.hash == digest)
        log.warning("unit body %s in the registry does not parse; hiding %s", digest, names)
    current = await _current_reasons(registry, jobs, reasons, revision)
    return build_unit_infos(jobs, bodies, schedule, states, current)


def _cache(bodies: ParsedBodies | None) -> ParsedBodies:
    # Not ``bodies or ...``: an empty cache is falsy, and would never fill.
    return ParsedBodies(BODY_CACHE_SIZE) if bodies is None else bodies


async def _no_bodies() -> dict[str, str]:
    return {}


async def _current_reasons(
    registry: Registry, jobs: Sequence[Job], reasons: Mapping[str, PlacementReason], revision: int
) -> dict[str, str]:
    """The reasons that still explain their unit: a reason judged for other
    content, another desired state or another set of machines is stale (the
    engine's next pass decides anew) and is never reported."""
    if not reasons:
        return {}
    fingerprint = machine_set_fingerprint(await registry.list_machines(revision))
    by_name = {job.name: job for job in jobs}
    return {
        name: reason.text
        for name, reason in reasons.items()
        if (job := by_name.get(name)) is not None and reason.explains(job, fingerprint)
    }
