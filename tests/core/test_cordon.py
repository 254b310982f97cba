"""A cordon: the scheduler places nothing new on a cordoned machine, keeps what runs
there, and says why; an eviction (a drain's move) takes a unit and its MachineOf
followers off their machine and places them elsewhere in the same pass."""

from __future__ import annotations

from fleet.core.checks import Stacks, check_cordon
from fleet.core.model import DesiredState, Machine, machine_set_fingerprint
from fleet.core.reasons import Reason, Rule
from fleet.core.requirements import Requirements
from fleet.core.scheduler import SchedUnit, Snapshot, plan
from tests.core.test_checks import M0, M1, occupancy, unit

M2 = "2c" * 16


def su(name: str, **req: object) -> SchedUnit:
    return SchedUnit(name, "0" * 40, DesiredState.LAUNCHED, Requirements(**req))  # type: ignore[arg-type]


def machines(cordoned: dict[str, str] | None = None) -> dict[str, Machine]:
    cordoned = cordoned or {}
    return {m: Machine(m, cordon=cordoned.get(m)) for m in (M0, M1, M2)}


def test_check_cordon_rejects_only_a_cordoned_machine() -> None:
    occ = occupancy([unit("a.service")])
    assert check_cordon(occ, unit("a.service"), M0) is None
    occ.machines[M0] = Machine(M0, cordon="kernel upgrade")  # type: ignore[index]
    rejection = check_cordon(occ, unit("a.service"), M0)
    assert rejection is not None
    assert (rejection.rule, rejection.detail) == (
        Rule.CORDON,
        "the machine is cordoned (kernel upgrade)",
    )
    occ.machines[M0] = Machine(M0, cordon="")  # type: ignore[index]
    rejection = check_cordon(occ, unit("a.service"), M0)
    assert rejection is not None
    assert rejection.detail == "the machine is cordoned"


def test_the_cordon_heads_placing_stacks_only_when_a_machine_is_cordoned() -> None:
    u = unit("a.service")
    assert check_cordon not in Stacks([u]).placing(u)
    stacks = Stacks([u], cordoned=True)
    assert stacks.placing(u)[0] is check_cordon
    assert check_cordon not in stacks.keeping(u)


def test_nothing_new_lands_on_a_cordoned_machine_and_what_runs_there_stays() -> None:
    units = {n: su(n) for n in ("a.service", "b.service", "c.service", "d.service")}
    result = plan(
        Snapshot(units, machines({M0: "maint"}), schedule={"a.service": M0, "b.service": M0})
    )
    assert not result.unschedule
    assert {p.name: p.machine_id for p in result.place} == {"c.service": M1, "d.service": M2}


def test_a_unit_that_fits_only_a_cordoned_machine_says_so() -> None:
    units = {"a.service": su("a.service", machine_id=M0)}
    result = plan(Snapshot(units, machines({M0: "maint"})))
    assert not result.place
    rules = {(r.machine_id, r.rule) for r in result.unplaceable["a.service"]}
    assert rules == {(M0, Rule.CORDON), (M1, Rule.MACHINE_ID), (M2, Rule.MACHINE_ID)}


def test_an_evicted_unit_moves_with_its_followers_and_others_stay() -> None:
    units = {
        "a.service": su("a.service"),
        "a-side.service": su("a-side.service", machine_of=("a.service",)),
        "b.service": su("b.service"),
    }
    schedule = {"a.service": M0, "a-side.service": M0, "b.service": M0}
    result = plan(Snapshot(units, machines({M0: ""}), schedule=schedule, evict={"a.service": M0}))
    gone = {u.name: u.reason for u in result.unschedule}
    assert gone == {"a.service": Reason.DRAINED, "a-side.service": Reason.FOLLOWS_UNSCHEDULED}
    placed = {p.name: p.machine_id for p in result.place}
    assert placed["a.service"] in (M1, M2)
    assert placed["a-side.service"] == placed["a.service"]
    assert "b.service" not in placed


def test_an_eviction_from_another_machine_changes_nothing() -> None:
    units = {"a.service": su("a.service")}
    result = plan(Snapshot(units, machines(), schedule={"a.service": M1}, evict={"a.service": M0}))
    assert not result.changes


def test_a_cordon_changes_the_machine_fingerprint() -> None:
    plain = machine_set_fingerprint(machines().values())
    assert machine_set_fingerprint(machines({M0: "x"}).values()) != plain
    assert machine_set_fingerprint(machines({M0: ""}).values()) != plain
