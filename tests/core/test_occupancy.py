"""What a pass records per machine: claimed versus admitted units, globs held there,
MachineOf peers and the Replaces relation."""

from __future__ import annotations

from fleet.core.model import DesiredState, Machine
from fleet.core.occupancy import Occupancy
from fleet.core.requirements import Requirements
from fleet.core.scheduler import SchedUnit

M0, M1 = "0a" * 16, "1b" * 16


def unit(name: str, **req: object) -> SchedUnit:
    return SchedUnit(name, "0" * 40, DesiredState.LAUNCHED, Requirements(**req))  # type: ignore[arg-type]


def occupancy(*units: SchedUnit, globals_on: dict[str, tuple[str, ...]] | None = None) -> Occupancy:
    ms = {M0: Machine(M0), M1: Machine(M1)}
    return Occupancy({u.name: u for u in units}, ms, globals_on or {M0: (), M1: ()})


def test_claimed_units_are_present_but_not_on_the_machine() -> None:
    occ = occupancy(unit("a.service", conflicts=("b.*",)))
    occ.claim("a.service", M0)
    assert occ.present("a.service", M0)
    assert occ.on_machine[M0] == {}
    assert occ.remove("a.service") == (M0, False)
    assert not occ.present("a.service", M0)


def test_add_and_remove_keep_the_glob_holders() -> None:
    occ = occupancy(unit("a.service", conflicts=("b.*",), replaces=("c.*",)))
    occ.add("a.service", M0, placed=True)
    assert list(occ.on_machine[M0]) == ["a.service"]
    assert occ.holders[M0]["a.service"].patterns == ("b.*",)
    assert list(occ.replacers[M0]) == ["a.service"]
    assert occ.placed == {"a.service"}
    assert occ.remove("a.service") == (M0, True)
    assert (occ.holders[M0], occ.replacers[M0], occ.placed) == ({}, {}, set())


def test_global_units_run_where_admitted() -> None:
    g = unit("g.service", is_global=True, conflicts=("x.*",))
    occ = occupancy(g, globals_on={M0: ("g.service",), M1: ()})
    assert occ.present("g.service", M0)
    assert not occ.present("g.service", M1)
    assert occ.machines_running("g.service") == {M0}
    assert occ.machines_running("absent.service") == set()
    assert list(occ.holders[M0]) == ["g.service"]


def test_peers_and_followers() -> None:
    occ = occupancy(
        unit("a.service", machine_of=("b.service", "a.service", "b.service")), unit("b.service")
    )
    assert occ.peers == {"a.service": ("b.service",), "b.service": ()}
    assert occ.followers == {"b.service": ["a.service"]}


def test_replaces_ignores_circular_pairs() -> None:
    occ = occupancy(
        unit("a.service", replaces=("b.service",)),
        unit("b.service", replaces=("a.*",)),
        unit("c.service", replaces=("b.service", "gone.*")),
    )
    assert not occ.replaces("a.service", "b.service")
    assert not occ.replaces("b.service", "a.service")
    assert occ.replaces("c.service", "b.service")
    assert occ.replaces("c.service", "gone.service")  # a unit not in the pass replaces nothing
