"""The scheduler's placement outcomes for fleet's functional scheduling scenarios, plus
unschedule reasons, tie-breaking, metadata operators and the explanation texts."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from fleet.core.model import DesiredState, Machine
from fleet.core.reasons import Reason, Rule
from fleet.core.requirements import MetadataConstraint, MetadataOp, Requirements
from fleet.core.scheduler import (
    Plan,
    Rejection,
    SchedUnit,
    Snapshot,
    explain,
    global_units_for,
    plan,
)

LAUNCHED = DesiredState.LAUNCHED
M0 = "0a" * 16  # machine ids sort M0 < M1 < M2 < M3
M1 = "1b" * 16
M2 = "2c" * 16
M3 = "3d" * 16


def unit(name: str, desired: DesiredState = LAUNCHED, **req: object) -> SchedUnit:
    return SchedUnit(name, "0" * 40, desired, Requirements(**req))  # type: ignore[arg-type]


def machines(*ids: str, **metadata: dict[str, str]) -> dict[str, Machine]:
    return {m: Machine(m, metadata=metadata.get(m, {})) for m in ids}


def snap(
    units: Iterable[SchedUnit], ms: dict[str, Machine], schedule: dict[str, str] | None = None
) -> Snapshot:
    return Snapshot({u.name: u for u in units}, ms, dict(schedule or {}))


def run(s: Snapshot) -> tuple[Plan, dict[str, str]]:
    p = plan(s)
    return p, p.result(s)


def md(key: str, op: str, value: str) -> MetadataConstraint:
    return MetadataConstraint(key, MetadataOp(op), value)


# -- fleet's functional scenarios -------------------------------------------------------------


def test_TestScheduleConflicts() -> None:
    units = [unit(f"conflict.{i}.service", conflicts=("conflict.*.service",)) for i in range(5)]
    p, result = run(snap(units, machines(M0, M1, M2)))
    assert len(result) == 3
    assert sorted(result.values()) == [M0, M1, M2]
    assert sorted(p.unplaceable) == ["conflict.3.service", "conflict.4.service"]
    for rejections in p.unplaceable.values():
        assert [r.machine_id for r in rejections] == [M0, M1, M2]
        assert {r.rule for r in rejections} == {Rule.CONFLICTS}


def test_TestScheduleMultipleConflicts() -> None:
    names = [f"conflict.multiple.{i}.service" for i in range(3)]
    units = [unit(n, conflicts=tuple(o for o in names if o != n)) for n in names]
    _, result = run(snap(units, machines(M0, M1, M2)))
    assert sorted(result) == names
    assert len(set(result.values())) == 3


def test_TestScheduleOneWayConflict() -> None:
    ms = machines(M0)
    cwh = unit("conflicts-with-hello.service", conflicts=("hello.service",))
    hello = unit("hello.service")
    p, result = run(snap([cwh, hello], ms, {cwh.name: M0}))
    assert result == {cwh.name: M0}
    assert p.unplaceable["hello.service"] == (
        Rejection(
            M0,
            Rule.CONFLICTS,
            "conflicts-with-hello.service runs there and has Conflicts=hello.service",
        ),
    )
    # destroy conflicts-with-hello: hello takes its place
    p, result = run(snap([hello], ms, {cwh.name: M0}))
    assert [(u.name, u.reason) for u in p.unschedule] == [(cwh.name, Reason.UNIT_DESTROYED)]
    assert result == {"hello.service": M0}


def test_TestScheduleMachineOf() -> None:
    ms = machines(M0, M1, M2)
    units = [unit(f"ping.{i}.service") for i in range(3)]
    units += [unit(f"pong.{i}.service", machine_of=(f"ping.{i}.service",)) for i in range(3)]
    s = snap(units, ms)
    p, result = run(s)
    assert len(result) == 6
    assert len({result[f"ping.{i}.service"] for i in range(3)}) == 3
    for i in range(3):
        assert result[f"pong.{i}.service"] == result[f"ping.{i}.service"]
    assert {x.reason for x in p.place if x.name.startswith("pong")} == {Reason.PLACED_MACHINE_OF}

    # stop fleet on ping.1's machine: ping.1 and pong.1 move together; nothing else moves
    gone = result["ping.1.service"]
    s2 = snap(units, {m: v for m, v in ms.items() if m != gone}, result)
    p2, result2 = run(s2)
    assert {u.name for u in p2.unschedule} == {"ping.1.service", "pong.1.service"}
    assert {u.reason for u in p2.unschedule} == {Reason.MACHINE_GONE}
    assert result2["ping.1.service"] == result2["pong.1.service"] != gone
    assert {n: m for n, m in result2.items() if "1" not in n} == {
        n: m for n, m in result.items() if "1" not in n
    }


def test_TestScheduleReplace() -> None:
    # fleet's test: replace.1 (Replaces=replace.0) starts after replace.0; they end up apart
    ms = machines(M0, M1)
    r0 = unit("replace.0.service")
    r1 = unit("replace.1.service", replaces=("replace.0.service",))
    _, result = run(snap([r0], ms))
    p, result = run(snap([r0, r1], ms, result))
    assert len(result) == 2
    assert result["replace.0.service"] != result["replace.1.service"]
    assert not p.unschedule


def test_replace_displaces_unit_from_the_machine_it_lands_on() -> None:
    # replace.0 on M0; replace.1 and replace.2 (MachineOf replace.1) on M1; kick0 lands on the
    # less-loaded M0 and pushes replace.0 to the least-loaded other machine.
    ms = machines(M0, M1)
    units = [
        unit("replace.0.service"),
        unit("replace.1.service"),
        unit("replace.2.service", machine_of=("replace.1.service",)),
        unit("replace-kick0.service", replaces=("replace.0.service",)),
    ]
    schedule = {"replace.0.service": M0, "replace.1.service": M1, "replace.2.service": M1}
    s = snap(units, ms, schedule)
    p, result = run(s)
    assert result["replace-kick0.service"] == M0
    assert result["replace.0.service"] == M1
    assert [(u.name, u.machine_id, u.reason, u.detail) for u in p.unschedule] == [
        ("replace.0.service", M0, Reason.REPLACED, "replaced by replace-kick0.service")
    ]
    assert "displaced replace.0.service" in p.place[0].detail
    assert not plan(snap(units, ms, result)).changes


def test_replaced_unit_already_sharing_a_machine_moves_away() -> None:
    ms = machines(M0, M1)
    units = [unit("new.service", replaces=("old.service",)), unit("old.service")]
    p, result = run(snap(units, ms, {"new.service": M0, "old.service": M0}))
    assert [(u.name, u.reason) for u in p.unschedule] == [("old.service", Reason.REPLACED)]
    assert result == {"new.service": M0, "old.service": M1}


def test_replaced_unit_is_never_placed_beside_its_replacer() -> None:
    units = [unit("new.service", replaces=("old.service",)), unit("old.service")]
    p, result = run(snap(units, machines(M0), {"new.service": M0}))
    assert result == {"new.service": M0}
    assert p.unplaceable["old.service"] == (
        Rejection(M0, Rule.REPLACES, "new.service runs there and replaces it"),
    )


def test_TestScheduleCircularReplace() -> None:
    # Circular Replaces is ignored for both: neither displaces the other, even on one machine.
    r0 = unit("replace.0.service", replaces=("replace.1.service",))
    r1 = unit("replace.1.service", replaces=("replace.0.service",))
    p, result = run(snap([r0, r1], machines(M0), {"replace.0.service": M0}))
    assert not p.unschedule
    assert result == {"replace.0.service": M0, "replace.1.service": M0}
    p, result = run(snap([r0, r1], machines(M0), result))
    assert not p.changes


@pytest.mark.parametrize("form", ["full", "short"])
def test_TestScheduleConditionMachineID(form: str) -> None:
    ms = machines(M0, M1, M2)
    units = [
        unit(f"pin{i}.service", machine_id=m if form == "full" else m[:8])
        for i, m in enumerate([M2, M0, M1])
    ]
    p, result = run(snap(units, ms))
    assert result == {"pin0.service": M2, "pin1.service": M0, "pin2.service": M1}
    assert {x.reason for x in p.place} == {Reason.PLACED_MACHINE_ID}


def test_machine_id_of_an_absent_machine_is_unplaceable() -> None:
    p, result = run(snap([unit("pin.service", machine_id="ffffffff")], machines(M0, M1)))
    assert result == {}
    assert p.unplaceable["pin.service"] == (
        Rejection(M0, Rule.MACHINE_ID, "MachineID=ffffffff names another machine"),
        Rejection(M1, Rule.MACHINE_ID, "MachineID=ffffffff names another machine"),
    )


def test_TestScheduleGlobalConflicts() -> None:
    g0 = unit("conflict-global.0.service", is_global=True, conflicts=("conflict-global.*.service",))
    g1 = unit("conflict-global.1.service", is_global=True, conflicts=("conflict-global.*.service",))
    for m in machines(M0, M1, M2).values():
        # the earlier name wins on every host, whatever order the units come in
        assert global_units_for(m, [g1, g0]) == ["conflict-global.0.service"]


@pytest.mark.parametrize(
    ("units", "metadata", "expected"),
    [
        ([unit("g.service", is_global=True)], {}, ["g.service"]),
        ([unit("g.service", is_global=True, metadata=(md("az", "=", "a"),))], {"az": "b"}, []),
        ([unit("g.service", is_global=True, desired=DesiredState.INACTIVE)], {}, []),
        ([unit("plain.service")], {}, []),
        (
            [
                unit(
                    "a.service", is_global=True, metadata=(md("az", "=", "x"),), conflicts=("b.*",)
                ),
                unit("b.service", is_global=True),
            ],
            {"az": "y"},
            ["b.service"],  # a.service is not admitted, so it cannot block b.service
        ),
    ],
    ids=[
        "plain",
        "metadata-mismatch",
        "inactive-ignored",
        "non-global-ignored",
        "rejected-cant-block",
    ],
)
def test_global_units_for(
    units: list[SchedUnit], metadata: dict[str, str], expected: list[str]
) -> None:
    assert global_units_for(Machine(M0, metadata=metadata), units) == expected


def test_global_units_count_as_load_and_conflict_with_placed_units() -> None:
    ms = machines(M0, M1, M2, **{M0: {"role": "edge"}})
    g = unit("edge-proxy.service", is_global=True, metadata=(md("role", "=", "edge"),))
    c = unit("no-proxy.service", conflicts=("edge-proxy.service",))
    p, result = run(snap([g, unit("a.service"), c], ms))
    assert result == {"a.service": M1, "no-proxy.service": M2}  # M0 carries the global unit
    # the conflict is honoured even when M0 is the only machine
    p, result = run(snap([g, c], machines(M0, **{M0: {"role": "edge"}})))
    assert p.unplaceable["no-proxy.service"][0].rule is Rule.CONFLICTS


def test_TestTemplatesWithSpecifiersInMetadata() -> None:
    hosts = {M0: "smoke0", M1: "smoke1", M2: "smoke2"}
    ms = {m: Machine(m, metadata={"hostname": h}) for m, h in hosts.items()}
    # metadata@%i.service with MachineMetadata=hostname=%i, %i already expanded
    units = [
        unit(f"metadata@{h}.service", metadata=(md("hostname", "=", h),))
        for h in [*reversed(hosts.values()), "invalid"]
    ]
    p, result = run(snap(units, ms))
    assert result == {f"metadata@{h}.service": m for m, h in hosts.items()}
    assert list(p.unplaceable) == ["metadata@invalid.service"]
    assert {r.rule for r in p.unplaceable["metadata@invalid.service"]} == {Rule.MACHINE_METADATA}


def test_TestDynamicClusterNewMemberUnitMigration() -> None:
    ms = machines(M0, M1, M2, M3)
    units = [unit(f"conflict.{i}.service", conflicts=("conflict.*.service",)) for i in range(3)]
    _, result = run(snap(units, ms))
    assert len(set(result.values())) == 3
    empty = next(m for m in ms if m not in result.values())
    gone = result["conflict.1.service"]
    p, result2 = run(snap(units, {m: v for m, v in ms.items() if m != gone}, result))
    assert result2["conflict.1.service"] == empty
    assert result2["conflict.0.service"] == result["conflict.0.service"]
    assert result2["conflict.2.service"] == result["conflict.2.service"]
    assert [(u.name, u.reason) for u in p.unschedule] == [
        ("conflict.1.service", Reason.MACHINE_GONE)
    ]


# -- placement rules --------------------------------------------------------------------------


def test_least_loaded_ties_break_by_machine_id() -> None:
    ms = machines(M2, M0, M1)  # insertion order must not matter
    p = plan(snap([unit(f"u{i}.service") for i in range(4)], ms))
    assert [x.machine_id for x in p.place] == [M0, M1, M2, M0]
    assert p.place[3].detail == "the machine held 1 unit"


def test_least_loaded_counts_existing_units() -> None:
    ms = machines(M0, M1)
    schedule = {"a.service": M0, "b.service": M0, "c.service": M1}
    units = [unit(n) for n in [*schedule, "d.service", "e.service"]]
    _, result = run(snap(units, ms, schedule))
    assert result["d.service"] == M1
    assert result["e.service"] == M0


def test_inactive_and_global_units_are_not_placed() -> None:
    units = [unit("off.service", desired=DesiredState.INACTIVE), unit("g.service", is_global=True)]
    p = plan(snap(units, machines(M0)))
    assert not p.changes
    assert not p.unplaceable


def test_no_machines_at_all() -> None:
    p = plan(snap([unit("a.service")], {}))
    assert p.unplaceable == {"a.service": ()}
    assert (
        explain("a.service", ())
        == "a.service cannot be placed: there are no machines in the cluster."
    )


@pytest.mark.parametrize(
    ("constraints", "placed"),
    [
        ([md("disk", "!=", "hdd")], [M1, M2]),
        ([md("mem", ">=", "16")], [M1]),
        ([md("mem", "<", "16")], [M0]),
        ([md("kernel", ">", "4.9.0")], [M1, M2]),
        ([md("disk", "=", "ssd"), md("disk", "=", "nvme"), md("mem", ">", "4")], [M1]),
    ],
    ids=["ne", "ge-numeric", "lt-numeric", "version", "or-group-and-operator"],
)
def test_metadata_operators_in_placement(
    constraints: list[MetadataConstraint], placed: list[str]
) -> None:
    ms = {
        M0: Machine(M0, metadata={"disk": "hdd", "mem": "8", "kernel": "4.9.0"}),
        M1: Machine(M1, metadata={"disk": "ssd", "mem": "32", "kernel": "4.19.2"}),
        M2: Machine(M2, metadata={"disk": "nvme", "kernel": "5.10"}),
    }
    units = [unit(f"u{i}.service", metadata=tuple(constraints)) for i in range(6)]
    _, result = run(snap(units, ms))
    assert sorted(set(result.values())) == placed
    assert len(result) == 6


# -- unscheduling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "ms", "schedule", "expected"),
    [
        (
            [unit("a.service", desired=DesiredState.INACTIVE)],
            machines(M0),
            {"a.service": M0},
            ("a.service", Reason.DESIRED_INACTIVE, ""),
        ),
        (
            [unit("a.service")],
            machines(M0),
            {"a.service": M1},
            ("a.service", Reason.MACHINE_GONE, f"machine {M1} is no longer in the cluster"),
        ),
        (
            [unit("a.service", metadata=(md("az", "=", "a"),))],
            machines(M0, **{M0: {"az": "b"}}),
            {"a.service": M0},
            ("a.service", Reason.RULES_BROKEN, "MachineMetadata: az=a (machine has az=b)"),
        ),
        (
            [unit("a.service", machine_id=M1)],
            machines(M0, M1),
            {"a.service": M0},
            ("a.service", Reason.RULES_BROKEN, f"MachineID: MachineID={M1} names another machine"),
        ),
        (
            [unit("a.service"), unit("b.service", conflicts=("a.service",))],
            machines(M0),
            {"a.service": M0, "b.service": M0},
            (
                "b.service",
                Reason.RULES_BROKEN,
                "Conflicts: a.service runs there and matches Conflicts=a.service",
            ),
        ),
        (
            [unit("a.service", is_global=True)],
            machines(M0),
            {"a.service": M0},
            ("a.service", Reason.NOW_GLOBAL, ""),
        ),
    ],
    ids=[
        "desired-inactive",
        "machine-gone",
        "metadata-changed",
        "machine-id",
        "conflict-appeared",
        "now-global",
    ],
)
def test_unschedule_reasons(
    units: list[SchedUnit],
    ms: dict[str, Machine],
    schedule: dict[str, str],
    expected: tuple[str, Reason, str],
) -> None:
    p = plan(snap(units, ms, schedule))
    u = p.unschedule[0]
    assert (u.name, u.reason, u.detail) == expected
    assert u.machine_id == schedule[u.name]


def test_conflicting_units_sharing_a_machine_keep_the_earlier_name() -> None:
    # fleet #707: after a reboot three conflicting units could share a machine
    units = [unit(f"c{i}.service", conflicts=("c*.service",)) for i in range(3)]
    p, result = run(snap(units, machines(M0, M1, M2), dict.fromkeys((u.name for u in units), M0)))
    assert result["c0.service"] == M0
    assert sorted(result.values()) == [M0, M1, M2]
    assert [u.name for u in p.unschedule] == ["c1.service", "c2.service"]


def test_follower_moves_with_its_target() -> None:
    units = [
        unit("t.service", metadata=(md("ok", "=", "1"),)),
        unit("f.service", machine_of=("t.service",)),
    ]
    ms = machines(M0, M1, **{M0: {"ok": "0"}, M1: {"ok": "1"}})
    p, result = run(snap(units, ms, {"t.service": M0, "f.service": M0}))
    assert result == {"t.service": M1, "f.service": M1}
    assert [(u.name, u.reason, u.detail) for u in p.unschedule] == [
        ("t.service", Reason.RULES_BROKEN, "MachineMetadata: ok=1 (machine has ok=0)"),
        ("f.service", Reason.FOLLOWS_UNSCHEDULED, "follows t.service"),
    ]


def test_follower_of_an_unscheduled_target_is_unplaceable() -> None:
    units = [
        unit("t.service", desired=DesiredState.INACTIVE),
        unit("f.service", machine_of=("t.service",)),
    ]
    p, result = run(snap(units, machines(M0, M1), {"t.service": M0, "f.service": M0}))
    assert result == {}
    assert [(u.name, u.reason) for u in p.unschedule] == [
        ("f.service", Reason.FOLLOWS_UNSCHEDULED),
        ("t.service", Reason.DESIRED_INACTIVE),
    ] or [(u.name, u.reason) for u in p.unschedule] == [
        ("t.service", Reason.DESIRED_INACTIVE),
        ("f.service", Reason.FOLLOWS_UNSCHEDULED),
    ]
    assert p.unplaceable["f.service"] == (
        Rejection(M0, Rule.MACHINE_OF, "follows t.service, which is not scheduled"),
        Rejection(M1, Rule.MACHINE_OF, "follows t.service, which is not scheduled"),
    )


def test_follower_is_placed_after_its_target_whatever_the_names() -> None:
    units = [unit("a-follower.service", machine_of=("z-target.service",)), unit("z-target.service")]
    p, result = run(snap(units, machines(M0, M1)))
    assert [x.name for x in p.place] == ["z-target.service", "a-follower.service"]
    assert result["a-follower.service"] == result["z-target.service"]


def test_unschedule_then_place_on_the_same_machine_is_no_change() -> None:
    # b-x loses to a-w (earlier name) on M0 and is unscheduled; then a-w's target z-t turns
    # out to be broken, taking a-w away too, and b-x fits on M0 again: no stop/start for it.
    ms = machines(M0, M1, **{M0: {"ok": "0"}, M1: {"ok": "0"}})
    units = [
        unit("z-t.service", metadata=(md("ok", "=", "1"),)),
        unit("a-w.service", machine_of=("z-t.service",)),
        unit("b-x.service", conflicts=("a-w.service",)),
        unit("y1.service"),
        unit("y2.service"),
    ]
    schedule = dict.fromkeys(["z-t.service", "a-w.service", "b-x.service"], M0)
    schedule |= {"y1.service": M1, "y2.service": M1}
    p, result = run(snap(units, ms, schedule))
    assert [(u.name, u.reason) for u in p.unschedule] == [
        ("z-t.service", Reason.RULES_BROKEN),
        ("a-w.service", Reason.FOLLOWS_UNSCHEDULED),
    ]
    assert p.place == ()
    assert result["b-x.service"] == M0
    assert sorted(p.unplaceable) == ["a-w.service", "z-t.service"]


def test_rules_are_checked_in_fleet_order() -> None:
    u = unit(
        "u.service",
        machine_id=M1,
        metadata=(md("az", "=", "a"),),
        machine_of=("t.service",),
    )
    p = plan(snap([u], machines(M0, M1, M2, **{M1: {"az": "b"}})))
    assert [(r.machine_id, r.rule) for r in p.unplaceable["u.service"]] == [
        (M0, Rule.MACHINE_ID),
        (M1, Rule.MACHINE_METADATA),
        (M2, Rule.MACHINE_ID),
    ]


def test_placement_does_not_depend_on_mapping_order() -> None:
    units = [unit(f"c{i}.service", conflicts=("c[02468].service",)) for i in range(10)]
    ms = machines(M0, M1, M2, M3)
    forward = plan(snap(units, ms))
    backward = plan(Snapshot({u.name: u for u in reversed(units)}, dict(reversed(ms.items())), {}))
    assert forward == backward


# -- explanation texts ------------------------------------------------------------------------


def test_explain_groups_by_rule() -> None:
    rejections = [
        Rejection(M0, Rule.MACHINE_METADATA, "az=a (machine has az=b)"),
        Rejection(M1, Rule.CONFLICTS, "c0.service runs there and matches Conflicts=c*.service"),
        Rejection(M2, Rule.MACHINE_METADATA, "az=a (machine has az=b)"),
    ]
    assert explain("u.service", rejections) == (
        "u.service cannot be placed on any of the 3 machines. "
        "MachineMetadata: az=a (machine has az=b) [on 0a0a0a0a and 2c2c2c2c]. "
        "Conflicts: c0.service runs there and matches Conflicts=c*.service [on 1b1b1b1b]."
    )


def test_explain_names_up_to_three_machines() -> None:
    same = "az=a (machine has no az)"
    three = [Rejection(m, Rule.MACHINE_METADATA, same) for m in (M0, M1, M2)]
    assert explain("u.service", three).endswith(
        "MachineMetadata: az=a (machine has no az) [on 0a0a0a0a, 1b1b1b1b and 2c2c2c2c]."
    )
    four = [*three, Rejection(M3, Rule.MACHINE_METADATA, same)]
    assert explain("u.service", four).endswith(
        "MachineMetadata: az=a (machine has no az) [on 4 machines]."
    )


def test_explain_single_machine() -> None:
    text = explain(
        "u.service", [Rejection(M0, Rule.MACHINE_ID, "MachineID=ffffffff names another machine")]
    )
    assert text == (
        "u.service cannot be placed on the only machine. "
        "MachineID: MachineID=ffffffff names another machine [on 0a0a0a0a]."
    )


def test_explain_stays_short_on_large_clusters() -> None:
    ms = {
        f"{i:08x}" + "f" * 24: Machine(f"{i:08x}" + "f" * 24, metadata={"n": str(i)})
        for i in range(500)
    }
    u = unit("u.service", metadata=(md("n", ">", "1000"),))
    p = plan(snap([u], ms))
    text = explain("u.service", p.unplaceable["u.service"])
    assert text.startswith(
        "u.service cannot be placed on any of the 500 machines. MachineMetadata: n>1000"
    )
    assert text.endswith("and 497 more machines.")
    assert len(text) < 400


def test_reason_texts() -> None:
    assert Reason.MACHINE_GONE.text("machine x is no longer in the cluster") == (
        "unscheduled: its target machine went away (machine x is no longer in the cluster)"
    )
    assert Reason.DESIRED_INACTIVE.text() == "unscheduled: its desired state is inactive"
    assert str(Rule.MACHINE_OF) == "MachineOf"


# -- MaxPerMachine and SpreadBy (B15) ---------------------------------------------------------


def web(i: int, **req: object) -> SchedUnit:
    return unit(f"web@{i}.service", LAUNCHED, **req)


def test_max_per_machine_puts_one_instance_per_machine_and_explains_the_rest() -> None:
    units = [web(i, max_per_machine=1) for i in range(1, 5)]
    p, result = run(snap(units, machines(M0, M1, M2)))
    assert sorted(result) == ["web@1.service", "web@2.service", "web@3.service"]
    assert sorted(result.values()) == [M0, M1, M2]
    detail = "holds 1 instance of web@.service already (MaxPerMachine=1)"
    assert p.unplaceable == {
        "web@4.service": tuple(Rejection(m, Rule.MAX_PER_MACHINE, detail) for m in (M0, M1, M2))
    }
    assert explain("web@4.service", p.unplaceable["web@4.service"]) == (
        "web@4.service cannot be placed on any of the 3 machines. MaxPerMachine: holds 1 "
        "instance of web@.service already (MaxPerMachine=1) [on 0a0a0a0a, 1b1b1b1b and 2c2c2c2c]."
    )


def test_max_per_machine_counts_every_instance_of_the_template() -> None:
    # web@1 sets no limit but counts for web@2; v@1 is another template and does not.
    units = [web(1), web(2, max_per_machine=1), unit("v@1.service"), unit("x.service")]
    ms = machines(M0, M1)
    _, result = run(snap(units, ms, {"web@1.service": M0, "x.service": M1}))
    assert result["web@2.service"] == M1
    _, result = run(snap(units, ms, {"web@1.service": M0, "v@1.service": M0, "x.service": M1}))
    assert result["web@2.service"] == M1


def test_lowered_max_per_machine_moves_the_later_names_away() -> None:
    units = [web(i, max_per_machine=2) for i in range(1, 4)]
    schedule = dict.fromkeys((u.name for u in units), M0)
    p, result = run(snap(units, machines(M0, M1), schedule))
    assert [(u.name, u.machine_id, u.reason, u.detail) for u in p.unschedule] == [
        (
            "web@3.service",
            M0,
            Reason.RULES_BROKEN,
            "MaxPerMachine: holds 2 instances of web@.service already (MaxPerMachine=2)",
        )
    ]
    assert result == {"web@1.service": M0, "web@2.service": M0, "web@3.service": M1}


ZONES = machines(M0, M1, M2, M3, **{M0: {"zone": "a"}, M1: {"zone": "a"}, M2: {"zone": "b"}})


def test_spread_by_keeps_zones_even_and_skips_machines_without_the_key() -> None:
    units = [web(i, spread_by="zone") for i in range(1, 5)]
    p, result = run(snap(units, ZONES))
    # a (ties: value order), b, then a again on its other machine, then b: 2 per zone.
    assert result == {
        "web@1.service": M0,
        "web@2.service": M2,
        "web@3.service": M1,
        "web@4.service": M2,
    }
    assert {x.reason for x in p.place} == {Reason.PLACED_SPREAD}
    assert [x.detail for x in p.place] == [
        "zone=a held 0 of 0 instances of web@.service; the machine held 0 units",
        "zone=b held 0 of 1 instance of web@.service; the machine held 0 units",
        "zone=a held 1 of 2 instances of web@.service; the machine held 0 units",
        "zone=b held 1 of 3 instances of web@.service; the machine held 1 unit",
    ]
    assert str(p.place[1]) == (
        "web@2.service -> 2c2c2c2c: placed where SpreadBy keeps its template's instances even "
        "(zone=b held 0 of 1 instance of web@.service; the machine held 0 units)"
    )


def test_spread_by_counts_instances_placed_without_it_and_does_not_rebalance() -> None:
    units = [web(1), web(2), web(3, spread_by="zone"), web(4, spread_by="zone")]
    p, result = run(snap(units, ZONES, {"web@1.service": M0, "web@2.service": M1}))
    assert p.unschedule == ()  # zone a keeps its two instances
    assert result["web@3.service"] == M2
    assert result["web@4.service"] == M2  # b has 1, a has 2: b again


def test_spread_by_without_the_key_anywhere_is_unplaceable() -> None:
    p, result = run(snap([web(1, spread_by="rack")], ZONES))
    assert result == {}
    assert {r.rule for r in p.unplaceable["web@1.service"]} == {Rule.SPREAD_BY}
    assert p.unplaceable["web@1.service"][0].detail == "has no metadata rack (SpreadBy=rack)"


def test_spread_by_honours_the_other_rules() -> None:
    ms = machines(
        M0,
        M1,
        M2,
        M3,
        **{M0: {"zone": "a"}, M1: {"zone": "b"}, M2: {"zone": "b"}, M3: {"zone": "c"}},
    )
    # MachineMetadata rules zone c out; MaxPerMachine=1 leaves zone a one instance only.
    units = [
        web(i, spread_by="zone", max_per_machine=1, metadata=(md("zone", "!=", "c"),))
        for i in range(1, 5)
    ]
    p, result = run(snap(units, ms))
    assert sorted(result.values()) == [M0, M1, M2]
    assert result["web@1.service"] == M0
    assert sorted(p.unplaceable) == ["web@4.service"]
    assert [r.rule for r in p.unplaceable["web@4.service"]] == [
        Rule.MAX_PER_MACHINE,
        Rule.MAX_PER_MACHINE,
        Rule.MAX_PER_MACHINE,
        Rule.MACHINE_METADATA,
    ]


def test_spread_by_with_an_or_group_on_its_own_key() -> None:
    ms = machines(M0, M1, M2, **{M0: {"zone": "a"}, M1: {"zone": "b"}, M2: {"zone": "c"}})
    units = [
        web(i, spread_by="zone", metadata=(md("zone", "=", "b"), md("zone", "=", "c")))
        for i in range(1, 5)
    ]
    _, result = run(snap(units, ms))
    assert [result[f"web@{i}.service"] for i in range(1, 5)] == [M1, M2, M1, M2]


def test_machine_id_and_machine_of_choose_the_machine_before_spread_by() -> None:
    units = [
        web(1, spread_by="zone", machine_id=M1),
        unit("t.service", machine_id=M1),
        web(2, spread_by="zone", machine_of=("t.service",)),
    ]
    p, result = run(snap(units, ZONES))
    assert result == {"web@1.service": M1, "t.service": M1, "web@2.service": M1}
    assert [x.reason for x in p.place if x.name.startswith("web")] == [
        Reason.PLACED_MACHINE_ID,
        Reason.PLACED_MACHINE_OF,
    ]


# -- pinned units across an absence (issue 13) -------------------------------------------------


def test_a_unit_pinned_to_an_absent_machine_stays_scheduled_there() -> None:
    """MachineID names the only machine that could ever run it: unscheduling it while
    that machine is cut from etcd would only restart it when the machine is back."""
    pinned = unit("pinned.service", machine_id=M1)
    short = unit("short.service", machine_id=M1[:8])
    follower = unit("follower.service", machine_of=("pinned.service",))
    free = unit("free.service")
    schedule = {u.name: M1 for u in (pinned, short, follower, free)}
    p, result = run(snap([pinned, short, follower, free], machines(M0), schedule))
    assert [(u.name, u.reason) for u in p.unschedule] == [("free.service", Reason.MACHINE_GONE)]
    assert [(x.name, x.machine_id) for x in p.place] == [("free.service", M0)]
    assert result == {
        "pinned.service": M1, "short.service": M1, "follower.service": M1, "free.service": M0,
    }  # fmt: skip
    assert p.unplaceable == {}
    # Back: nothing changes at all.
    p, _ = run(snap([pinned, short, follower, free], machines(M0, M1), result))
    assert not p.changes


def test_a_pinned_unit_on_an_absent_machine_is_still_unscheduled_when_unloaded_or_destroyed() -> (
    None
):
    pinned = unit("pinned.service", DesiredState.INACTIVE, machine_id=M1)
    follower = unit("follower.service", machine_of=("gone.service",))
    p, result = run(snap([pinned, follower], machines(M0), {"pinned.service": M1,
                                                            "gone.service": M1,
                                                            "follower.service": M1}))  # fmt: skip
    reasons = {u.name: u.reason for u in p.unschedule}
    assert reasons == {
        "pinned.service": Reason.DESIRED_INACTIVE,
        "gone.service": Reason.UNIT_DESTROYED,
        "follower.service": Reason.MACHINE_GONE,
    }
    assert result == {}
