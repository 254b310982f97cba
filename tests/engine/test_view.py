"""The engine's in-memory view without etcd: events in, one pass's writes out.

Machines here are SIMULATED records fed as watch events; the real scheduler plans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fleet.core.model import DesiredState, Job, Machine, PlacementReason, machine_set_fingerprint
from fleet.core.scheduler import plan
from fleet.engine.view import ClusterState, PassWrites
from fleet.ports import (
    BodyChanged,
    JobChanged,
    MachineChanged,
    MetadataChanged,
    RegistryEvent,
    ScheduleChange,
    ScheduleChanged,
)
from tests.engine.harness import unit_body

BODIES = dict(
    unit_body(x)[::-1] for x in ("", "Global=true\nMachineOf=x.service", "MachineMetadata=disk=ssd")
)
HASH, BAD_HASH, SSD_HASH = BODIES
_other_body, OTHER_HASH = unit_body(description="other")
BODIES[OTHER_HASH] = _other_body
L, LD, IN = DesiredState.LAUNCHED, DesiredState.LOADED, DesiredState.INACTIVE


def machine(machine_id: str, **metadata: str) -> RegistryEvent:
    return MachineChanged(machine_id, Machine(machine_id, "", metadata), 1)


def job(name: str, desired: DesiredState = L, hash: str = HASH) -> list[RegistryEvent]:
    return [BodyChanged(hash, BODIES[hash], 1), JobChanged(name, Job(name, hash, desired), 1)]


def scheduled(
    name: str, machine_id: str, desired: DesiredState = L, hash: str = HASH
) -> RegistryEvent:
    return ScheduleChanged(machine_id, name, Job(name, hash, desired), 1)


def unscheduled(name: str, machine_id: str, revision: int = 1) -> RegistryEvent:
    return ScheduleChanged(machine_id, name, None, revision)


def one_pass(view: ClusterState) -> PassWrites:
    cut = view.cut()
    return view.writes(cut, plan(cut.snapshot))


@dataclass(frozen=True)
class Case:
    id: str
    events: list[RegistryEvent]
    changes: list[ScheduleChange]
    reasons: dict[str, str | None] = field(default_factory=dict)
    existing_reasons: dict[str, str] = field(default_factory=dict)
    reason_check: Callable[[str], bool] | None = None


CASES = [
    Case(
        "adopted schedule writes nothing",
        [machine("m1"), machine("m2"), *job("a.service"), scheduled("a.service", "m2")],
        [],
    ),
    Case(
        "new unit placed with hash and desired state",
        [machine("m1"), *job("a.service", LD)],
        [ScheduleChange("a.service", "m1", HASH, LD)],
    ),
    Case(
        "desired state change rewrites the entry in place",
        [machine("m1"), machine("m2"), *job("a.service", LD), scheduled("a.service", "m2")],
        [ScheduleChange("a.service", "m2", HASH, LD)],
    ),
    Case(
        "hash change rewrites the entry in place",
        [machine("m1"), *job("a.service", L, OTHER_HASH), scheduled("a.service", "m1")],
        [ScheduleChange("a.service", "m1", OTHER_HASH, L)],
    ),
    Case(
        "inactive unit is removed",
        [machine("m1"), *job("a.service", IN), scheduled("a.service", "m1")],
        [ScheduleChange("a.service", "m1", None)],
    ),
    Case(
        "destroyed unit is removed",
        [machine("m1"), scheduled("gone.service", "m1")],
        [ScheduleChange("gone.service", "m1", None)],
    ),
    Case(
        "unit scheduled twice keeps the first machine",
        [
            machine("m1"),
            machine("m2"),
            *job("a.service"),
            scheduled("a.service", "m1"),
            scheduled("a.service", "m2"),
        ],
        [ScheduleChange("a.service", "m2", None)],
    ),
    Case(
        "unit on a departed machine moves",
        [machine("m1"), *job("a.service"), scheduled("a.service", "gone")],
        [ScheduleChange("a.service", "gone", None), ScheduleChange("a.service", "m1", HASH, L)],
    ),
    Case(
        "unparseable unit is neither moved nor rewritten and gets a reason",
        [machine("m1"), *job("bad.service", LD, BAD_HASH), scheduled("bad.service", "m1")],
        [],
        reason_check=lambda why: "X-Fleet" in why and "MachineOf" in why,
    ),
    Case(
        "unplaceable unit gets a reason naming the rule",
        [machine("m1", disk="hdd"), *job("db.service", L, SSD_HASH)],
        [],
        reason_check=lambda why: "MachineMetadata" in why and "m1" in why,
    ),
    Case(
        "a unit whose body has not arrived yet keeps its reason",
        [machine("m1"), job("late.service")[1]],
        [],
        existing_reasons={"late.service": "earlier reason"},
    ),
    Case(
        "a placed unit's old reason is cleared",
        [machine("m1"), *job("a.service")],
        [ScheduleChange("a.service", "m1", HASH, L)],
        reasons={"a.service": None},
        existing_reasons={"a.service": "no machines"},
    ),
    Case(
        "reason of a destroyed unit is cleared",
        [machine("m1")],
        [],
        reasons={"old.service": None},
        existing_reasons={"old.service": "no machines"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_pass_writes(case: Case) -> None:
    view = ClusterState()
    view.apply(case.events)
    view.load_reasons(_reasons(case.existing_reasons))
    writes = one_pass(view)
    assert list(writes.changes) == case.changes
    texts = {n: None if r is None else r.text for n, r in writes.reasons.items()}
    if case.reason_check is None:
        assert texts == case.reasons
    else:
        (why,) = texts.values()
        assert why is not None
        assert case.reason_check(why), why


def _reasons(texts: dict[str, str]) -> dict[str, PlacementReason]:
    return {name: PlacementReason(text) for name, text in texts.items()}


def test_a_reason_records_what_it_judged_and_a_new_machine_makes_it_anew() -> None:
    view = ClusterState()
    view.apply([machine("m1", disk="hdd"), *job("db.service", L, SSD_HASH)])
    first = one_pass(view)
    reason = first.reasons["db.service"]
    assert reason is not None
    assert (reason.hash, reason.desired) == (SSD_HASH, L)
    assert reason.machines == machine_set_fingerprint(view.effective_machines().values())
    view.written(first)
    assert not one_pass(view)  # nothing changed: nothing rewritten
    view.apply([machine("m2", disk="hdd")])
    again = one_pass(view).reasons["db.service"]
    assert again is not None
    assert again.machines != reason.machines


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_written_pass_is_a_fixed_point(case: Case) -> None:
    view = ClusterState()
    view.apply(case.events)
    view.load_reasons(_reasons(case.existing_reasons))
    view.written(one_pass(view))
    again = one_pass(view)
    assert not again, again


def test_stale_events_do_not_undo_an_own_write_and_the_echo_is_not_a_change() -> None:
    view = ClusterState()
    view.apply([machine("m1"), *job("a.service")])
    writes = one_pass(view)
    view.expect(writes)
    view.written(writes)
    # An older delete of the same key (revision before our write) arrives late.
    assert not view.apply([unscheduled("a.service", "m1", revision=1)])
    assert view.schedule == {"a.service": {"m1": Job("a.service", HASH, L)}}
    # Our echo: no replan needed, and the key is no longer shadowed.
    assert not view.apply([scheduled("a.service", "m1")])
    assert view.pending == {}
    assert view.apply([unscheduled("a.service", "m1", revision=9)])
    assert view.schedule == {}


def test_dynamic_metadata_overlays_and_hides_published_metadata() -> None:
    view = ClusterState()
    view.apply([machine("m1", role="web", disk="ssd")])
    view.apply([MetadataChanged("m1", "role", "db", 1)])
    view.apply([MetadataChanged("m1", "disk", None, 1)])  # a tombstone hides the key
    assert dict(view.effective_machines()["m1"].metadata) == {"role": "db"}
    view.apply([MetadataChanged("m1", "disk", None, 2, removed=True)])
    assert dict(view.effective_machines()["m1"].metadata) == {"role": "db", "disk": "ssd"}


@pytest.mark.parametrize(
    ("shielded", "removed"),
    [
        pytest.param((), [ScheduleChange("a.service", "gone", None)], id="absent-machine-dies"),
        pytest.param(("gone",), [], id="shielded-after-outage-keeps-its-units"),
    ],
)
def test_units_on_a_shielded_absent_machine_stay_put(
    shielded: tuple[str, ...], removed: list[ScheduleChange]
) -> None:
    """B7: after an etcd outage the engine shields machines that may only have lost
    their presence to it; their units are neither unscheduled nor placed elsewhere."""
    view = ClusterState()
    view.apply([machine("live"), *job("a.service"), scheduled("a.service", "gone")])
    cut = view.cut(shielded)
    writes = view.writes(cut, plan(cut.snapshot))
    assert [c for c in writes.changes if c.hash is None] == removed
    placed_elsewhere = [c.machine_id for c in writes.changes if c.hash is not None]
    assert placed_elsewhere == ([] if shielded else ["live"])
    assert "a.service" not in writes.reasons


def test_a_follower_of_a_unit_still_waiting_for_its_body_waits_too() -> None:
    """The job and body watches can deliver one create in two batches: a follower
    judged in between would get a false "follows ..., which is not scheduled"."""
    view = ClusterState()
    follower_body, follower_hash = unit_body("MachineOf=target.service")
    view.apply(
        [
            machine("m1"),
            JobChanged("target.service", Job("target.service", HASH, L), 1),  # body not yet here
            BodyChanged(follower_hash, follower_body, 1),
            JobChanged("follower.service", Job("follower.service", follower_hash, L), 1),
        ]
    )
    writes = one_pass(view)
    assert writes.reasons == {}
    assert list(writes.changes) == []
    view.apply([BodyChanged(HASH, BODIES[HASH], 2)])
    placed = {c.name: c.machine_id for c in one_pass(view).changes}
    assert placed == {"target.service": "m1", "follower.service": "m1"}
