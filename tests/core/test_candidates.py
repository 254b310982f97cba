"""The placement indexes: least-loaded order with lazy invalidation, metadata heaps and
MachineID look-ups."""

from __future__ import annotations

import pytest

from fleet.core.candidates import Candidates
from fleet.core.model import Machine
from fleet.core.requirements import MetadataConstraint, MetadataOp

M0, M1, M2 = "0a" * 16, "1b" * 16, "2c" * 16
SSD = (MetadataConstraint("disk", MetadataOp.EQ, "ssd"),)


def candidates(**load: int) -> Candidates:
    ids = {"m0": M0, "m1": M1, "m2": M2}
    disks = {M0: "hdd", M1: "ssd", M2: "ssd"}
    ms = {m: Machine(m, metadata={"disk": disks[m]}) for m in sorted(ids.values())}
    return Candidates(ms, {ids[k]: v for k, v in load.items()})


def everything(_: str) -> bool:
    return True


@pytest.mark.parametrize(
    ("load", "expected"),
    [({"m0": 0, "m1": 0, "m2": 0}, M0), ({"m0": 2, "m1": 1, "m2": 1}, M1)],
    ids=["ties-by-machine-id", "least-loaded"],
)
def test_least_loaded(load: dict[str, int], expected: str) -> None:
    assert candidates(**load).least_loaded(everything) == expected


def test_load_changes_reorder_and_stale_entries_are_skipped() -> None:
    c = candidates(m0=0, m1=1, m2=1)
    c.set_load(M0, +2)
    assert c.least_loaded(everything) == M1
    c.set_load(M0, -2)
    assert c.least_loaded(everything) == M0
    seen: list[str] = []

    def refuse(mid: str) -> bool:
        seen.append(mid)
        return False

    assert c.least_loaded(refuse) is None
    assert seen == [M0, M1, M2]  # each machine once, whatever entries went stale
    assert c.least_loaded(everything) == M0  # a failed search leaves the heap intact


def test_metadata_heap_holds_only_eligible_machines_and_follows_load() -> None:
    c = candidates(m0=0, m1=0, m2=0)
    assert c.least_loaded(everything, SSD) == M1
    c.set_load(M1, +1)
    assert c.least_loaded(everything, SSD) == M2
    assert c.least_loaded(lambda m: m == M0, SSD) is None


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [(M1, [M1]), (M1[:8], [M1]), (M1[:7], []), ("ff" * 16, [])],
    ids=["full", "short", "prefix", "absent"],
)
def test_with_machine_id(wanted: str, expected: list[str]) -> None:
    assert candidates(m0=0, m1=0, m2=0).with_machine_id(wanted) == expected


def test_first_fit_in_load_order() -> None:
    c = candidates(m0=3, m1=2, m2=1)
    assert c.first_fit([M0, M1, M2], everything) == M2
    assert c.first_fit([M0, M1], lambda m: m != M1) == M0
    assert c.first_fit([], everything) is None
