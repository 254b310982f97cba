"""Properties of MaxPerMachine and SpreadBy (B15) over random clusters and successive
passes: the limit is never exceeded, SpreadBy from empty keeps the values of its key
within one instance of each other, and every instance left out names the rule why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.matching import metadata_matches
from fleet.core.model import DesiredState, Machine
from fleet.core.reasons import Rule
from fleet.core.requirements import MetadataConstraint, MetadataOp, Requirements
from fleet.core.scheduler import Plan, SchedUnit, Snapshot, plan

MACHINE_IDS = [f"{i:x}" * 32 for i in range(1, 9)]
TEMPLATES = ["web@.service", "db@.service"]
ZONES = ["a", "b", "c"]
SSD = MetadataConstraint("disk", MetadataOp.EQ, "ssd")


@dataclass(frozen=True)
class Options:
    """What one template file says: all its instances share it."""

    max_per_machine: int | None
    spread_by: str | None
    ssd_only: bool

    def requirements(self) -> Requirements:
        return Requirements(
            max_per_machine=self.max_per_machine,
            spread_by=self.spread_by,
            metadata=(SSD,) if self.ssd_only else (),
        )


options = st.builds(
    Options,
    st.one_of(st.none(), st.integers(1, 3)),
    st.sampled_from([None, "zone", "zone", "rack"]),
    st.booleans(),
)


@st.composite
def machine(draw: st.DrawFn, mid: str) -> Machine:
    metadata = {}
    if draw(st.integers(0, 4)) > 0:  # most machines have a zone
        metadata["zone"] = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        metadata["disk"] = draw(st.sampled_from(["ssd", "hdd"]))
    if draw(st.integers(0, 3)) == 0:
        metadata["rack"] = draw(st.sampled_from(["r1", "r2"]))
    return Machine(mid, metadata=metadata)


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Machine]:
    ids = draw(st.lists(st.sampled_from(MACHINE_IDS), unique=True))
    return {m: draw(machine(m)) for m in sorted(ids)}


def instances(template: str, count: int, opts: Options) -> dict[str, SchedUnit]:
    prefix, _, suffix = template.partition("@.")
    names = [f"{prefix}@{i}.{suffix}" for i in range(1, count + 1)]
    req = opts.requirements()
    return {n: SchedUnit(n, "0" * 40, DesiredState.LAUNCHED, req) for n in names}


@st.composite
def workloads(draw: st.DrawFn) -> tuple[dict[str, SchedUnit], dict[str, Options]]:
    units: dict[str, SchedUnit] = {}
    chosen: dict[str, Options] = {}
    for template in TEMPLATES:
        opts = draw(options)
        chosen[template] = opts
        units |= instances(template, draw(st.integers(0, 9)), opts)
    for i in range(draw(st.integers(0, 4))):  # plain units: load, nothing else
        name = f"plain{i}.service"
        units[name] = SchedUnit(name, "0" * 40, DesiredState.LAUNCHED, Requirements())
    return units, chosen


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """A cluster, a workload and any schedule at all (rules broken or not)."""
    ms = draw(clusters())
    units, _ = draw(workloads())
    targets = [*ms, "gone" * 8]
    schedule = draw(
        st.dictionaries(st.sampled_from(sorted(units) or ["x"]), st.sampled_from(targets))
    )
    return Snapshot(units, ms, {n: m for n, m in schedule.items() if n in units})


def template(name: str) -> str | None:
    stem, _, suffix = name.rpartition(".")
    prefix, at, _ = stem.partition("@")
    return f"{prefix}@.{suffix}" if at else None


def per_machine(schedule: dict[str, str]) -> Counter[tuple[str, str]]:
    """(template, machine) -> how many of its instances the machine holds."""
    return Counter((t, m) for n, m in schedule.items() if (t := template(n)) is not None)


def check_pass(s: Snapshot, p: Plan, opts: dict[str, Options]) -> dict[str, str]:
    """Every property one pass must keep; returns the schedule after it."""
    result = p.result(s)
    counts = per_machine(result)
    for (t, m), n in counts.items():
        limit = opts[t].max_per_machine
        assert limit is None or n <= limit, (t, m, n)
    for name, m in result.items():
        key = s.units[name].requirements.spread_by
        assert key is None or key in s.machines[m].metadata, (name, m)
    for name in s.units:
        assert (name in result) != (name in p.unplaceable), name
    for name, rejections in p.unplaceable.items():
        req = s.units[name].requirements
        of = template(name)
        assert [r.machine_id for r in rejections] == sorted(s.machines)
        for r in rejections:
            metadata = s.machines[r.machine_id].metadata
            if r.rule is Rule.MACHINE_METADATA:
                assert not metadata_matches(req.metadata, metadata)
            elif r.rule is Rule.SPREAD_BY:
                assert req.spread_by is not None
                assert req.spread_by not in metadata
                assert f"SpreadBy={req.spread_by}" in r.detail
            else:
                assert r.rule is Rule.MAX_PER_MACHINE, r
                assert of is not None
                assert req.max_per_machine is not None
                assert counts[(of, r.machine_id)] >= req.max_per_machine
                assert f"MaxPerMachine={req.max_per_machine}" in r.detail
    return result


def even_enough(s: Snapshot, result: dict[str, str], t: str, key: str) -> None:
    """The values of ``key`` among the machines differ by at most one instance of ``t``."""
    values = {m.metadata[key] for m in s.machines.values() if key in m.metadata}
    held = Counter(s.machines[m].metadata[key] for n, m in result.items() if template(n) == t)
    if values:
        counts = [held[v] for v in values]
        assert max(counts) - min(counts) <= 1, (t, key, held)


@settings(max_examples=300, deadline=None)
@given(clusters(), workloads())
def test_one_pass_from_empty(
    ms: dict[str, Machine], work: tuple[dict[str, SchedUnit], dict[str, Options]]
) -> None:
    units, opts = work
    s = Snapshot(units, ms)
    p = plan(s)
    result = check_pass(s, p, opts)
    for t, o in opts.items():
        if o.spread_by is not None and o.max_per_machine is None and not o.ssd_only:
            # Nothing but SpreadBy constrains it: every value can always take one more.
            even_enough(s, result, t, o.spread_by)
    # A reconciled schedule is a fixed point, new rules included.
    again = plan(Snapshot(units, ms, result))
    assert not again.changes
    assert again.unplaceable.keys() == p.unplaceable.keys()


@st.composite
def histories(
    draw: st.DrawFn,
) -> tuple[dict[str, Machine], list[tuple[dict[str, Machine], dict[str, Options]]]]:
    """A first cluster, then up to four later passes, each with machines added and
    removed and maybe a template re-submitted with other options."""
    first = draw(clusters())
    steps = []
    current = dict(first)
    for _ in range(draw(st.integers(1, 4))):
        gone = draw(st.lists(st.sampled_from(sorted(current)), unique=True)) if current else []
        added = draw(st.lists(st.sampled_from(MACHINE_IDS), unique=True, max_size=3))
        current = {m: current[m] for m in current if m not in gone}
        for m in added:
            if m not in current:
                current[m] = draw(machine(m))
        changed = {t: draw(options) for t in TEMPLATES if draw(st.booleans())}
        steps.append((dict(sorted(current.items())), changed))
    return first, steps


@settings(max_examples=200, deadline=None)
@given(histories(), workloads())
def test_successive_passes_with_machines_coming_and_going(
    history: tuple[dict[str, Machine], list[tuple[dict[str, Machine], dict[str, Options]]]],
    work: tuple[dict[str, SchedUnit], dict[str, Options]],
) -> None:
    first, steps = history
    units, opts = work
    schedule = check_pass(Snapshot(units, first), plan(Snapshot(units, first)), opts)
    before = first
    for ms, changed in steps:
        opts = opts | changed
        for t, o in changed.items():
            units = units | {
                n: SchedUnit(n, "1" * 40, DesiredState.LAUNCHED, o.requirements())
                for n in units
                if template(n) == t
            }
        s = Snapshot(units, ms, schedule)
        p = plan(s)
        schedule = check_pass(s, p, opts)
        # Nothing placed is moved to rebalance: a unit leaves its machine only when the
        # machine went or changed, or its template came back with other options.
        for u in p.unschedule:
            same_machine = before.get(u.machine_id) == ms.get(u.machine_id)
            assert not same_machine or template(u.name) in changed, u
        before = ms
