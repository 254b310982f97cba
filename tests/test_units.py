"""fleet.units: the unit use cases against a real etcd, one row per rule.

Each write row starts from a seeded registry, runs one use case, and checks
both the answer (a result, or an error with its message) and what the
registry holds afterwards: the jobs, the global-units mirror and, for a
refusal, that nothing at all was written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from fleet import units
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import (
    DesiredState,
    Job,
    Machine,
    PlacementReason,
    UnitState,
    machine_set_fingerprint,
)
from fleet.core.unitfile import UnitFile
from fleet.errors import (
    AlreadyExists,
    FleetError,
    InvalidInput,
    InvalidRequirements,
    InvalidUnitName,
    NotFound,
    TooLarge,
)
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import async_test
from tests.registry.support import dump
from tests.unitsizes import CONTROL, unit_of_size

PLAIN = UnitFile.parse("[Service]\nExecStart=/bin/sleep 1000\n")
OTHER = UnitFile.parse("[Service]\nExecStart=/bin/sleep 2000\n")
GLOBAL = UnitFile.parse("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n")
PINNED_GLOBAL = UnitFile.parse(
    "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\nMachineID=m1\n"
)
BAD_STOP_AFTER = UnitFile.parse(
    "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nStopAfterDisconnect=soon\n"
)
UNKNOWN_KEY = UnitFile.parse("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nBogus=1\n")
# At fleet.core.limits' 128 KiB and one byte over; the worst case for etcd
# (every byte JSON-escaped to six) at the limit.
AT_LIMIT = unit_of_size(131072)
OVER_LIMIT = unit_of_size(131073)
WORST_AT_LIMIT = unit_of_size(131072, CONTROL)
TOO_LARGE = "unit big.service is too large: 131073 bytes, the limit is 131072 bytes (128 KiB)"

INACTIVE, LOADED, LAUNCHED = DesiredState.INACTIVE, DesiredState.LOADED, DesiredState.LAUNCHED

Action = Callable[[EtcdRegistry], Awaitable[object]]


@dataclass(frozen=True)
class Row:
    """``seed`` units exist first (all inactive, written through fleet.units);
    ``action`` answers ``result`` (when not None) or raises ``error`` starting
    with ``message``; afterwards the registry holds exactly ``jobs`` (name ->
    (unit, desired)) and the global mirror exactly ``globals_``. A refusal must
    leave the keyspace as seeded."""

    action: Action
    result: object = None
    error: type[FleetError] | None = None
    message: str = ""
    seed: dict[str, UnitFile] = field(default_factory=dict)
    jobs: dict[str, tuple[UnitFile, DesiredState]] = field(default_factory=dict)
    globals_: frozenset[str] = frozenset()


def create(name: str, unit: UnitFile, desired: DesiredState) -> Action:
    return lambda reg: units.create_unit(reg, name, unit, desired)


def replace(name: str, unit: UnitFile, desired: DesiredState) -> Action:
    return lambda reg: units.replace_unit(reg, name, unit, desired)


def set_desired(name: str, desired: DesiredState) -> Action:
    return lambda reg: units.set_desired_state(reg, name, desired)


def destroy(name: str) -> Action:
    return lambda reg: units.destroy_unit(reg, name)


def put(name: str, unit: UnitFile | None, desired: DesiredState | None) -> Action:
    return lambda reg: units.put_unit(reg, name, unit, desired)


WRITES = [
    # --- create / replace: validation, template rule, global mirror
    pytest.param(
        Row(create("a.service", PLAIN, LAUNCHED), jobs={"a.service": (PLAIN, LAUNCHED)}),
        id="create-plain",
    ),
    pytest.param(
        Row(
            create("g.service", GLOBAL, LOADED),
            jobs={"g.service": (GLOBAL, LOADED)},
            globals_=frozenset({"g.service"}),
        ),
        id="create-global-is-mirrored",
    ),
    pytest.param(
        Row(create("t@.service", PLAIN, INACTIVE), jobs={"t@.service": (PLAIN, INACTIVE)}),
        id="create-template-inactive",
    ),
    pytest.param(
        Row(
            create("t@.service", PLAIN, LOADED),
            error=InvalidInput,
            message='cannot activate template "t@.service"',
        ),
        id="create-template-loaded-refused",
    ),
    pytest.param(
        Row(create("t@1.service", PLAIN, LAUNCHED), jobs={"t@1.service": (PLAIN, LAUNCHED)}),
        id="create-instance-launched",
    ),
    pytest.param(
        Row(
            create("bad name.service", PLAIN, INACTIVE),
            error=InvalidUnitName,
            message="invalid unit name",
        ),
        id="create-invalid-name-refused",
    ),
    pytest.param(
        Row(
            create("p.service", PINNED_GLOBAL, INACTIVE),
            error=InvalidRequirements,
            message="[X-Fleet] MachineID cannot be combined with Global",
        ),
        id="create-invalid-requirements-refused",
    ),
    pytest.param(
        Row(
            create("s.service", BAD_STOP_AFTER, LAUNCHED),
            error=InvalidRequirements,
            message="[X-Fleet] StopAfterDisconnect must be a positive duration "
            '(such as 3s, 500ms or 1m30s), not "soon"',
        ),
        id="create-bad-stop-after-disconnect-refused",
    ),
    pytest.param(
        Row(
            create("u.service", UNKNOWN_KEY, INACTIVE), jobs={"u.service": (UNKNOWN_KEY, INACTIVE)}
        ),
        id="create-unknown-xfleet-key-is-only-a-warning",
    ),
    pytest.param(
        Row(
            create("a.service", OTHER, LAUNCHED),
            error=AlreadyExists,
            message="unit a.service already exists",
            seed={"a.service": PLAIN},
            jobs={"a.service": (PLAIN, INACTIVE)},
        ),
        id="create-existing-refused",
    ),
    pytest.param(
        Row(
            replace("g.service", PLAIN, LAUNCHED),
            seed={"g.service": GLOBAL},
            jobs={"g.service": (PLAIN, LAUNCHED)},
        ),
        id="replace-global-by-plain-drops-mirror",
    ),
    pytest.param(
        Row(
            replace("p.service", GLOBAL, LOADED),
            seed={"p.service": PLAIN},
            jobs={"p.service": (GLOBAL, LOADED)},
            globals_=frozenset({"p.service"}),
        ),
        id="replace-plain-by-global-adds-mirror",
    ),
    pytest.param(
        Row(
            replace("t@.service", OTHER, LAUNCHED),
            error=InvalidInput,
            message='cannot activate template "t@.service"',
            seed={"t@.service": PLAIN},
            jobs={"t@.service": (PLAIN, INACTIVE)},
        ),
        id="replace-template-launched-refused",
    ),
    # --- size limit
    pytest.param(
        Row(create("big.service", AT_LIMIT, LAUNCHED), jobs={"big.service": (AT_LIMIT, LAUNCHED)}),
        id="create-at-size-limit",
    ),
    pytest.param(
        Row(
            create("big.service", WORST_AT_LIMIT, INACTIVE),
            jobs={"big.service": (WORST_AT_LIMIT, INACTIVE)},
        ),
        id="create-at-size-limit-worst-escaping-fits-etcd",
    ),
    pytest.param(
        Row(create("big.service", OVER_LIMIT, INACTIVE), error=TooLarge, message=TOO_LARGE),
        id="create-over-size-limit-refused",
    ),
    pytest.param(
        Row(
            replace("big.service", OVER_LIMIT, INACTIVE),
            error=TooLarge,
            message=TOO_LARGE,
            seed={"big.service": PLAIN},
            jobs={"big.service": (PLAIN, INACTIVE)},
        ),
        id="replace-over-size-limit-refused",
    ),
    pytest.param(
        Row(
            put("big.service", OVER_LIMIT, LAUNCHED),
            error=TooLarge,
            message=TOO_LARGE,
            seed={"big.service": PLAIN},
            jobs={"big.service": (PLAIN, INACTIVE)},
        ),
        id="put-over-size-limit-refused",
    ),
    # --- desired state
    pytest.param(
        Row(
            set_desired("g.service", LAUNCHED),
            seed={"g.service": GLOBAL},
            jobs={"g.service": (GLOBAL, LAUNCHED)},
            globals_=frozenset({"g.service"}),
        ),
        id="set-desired-follows-mirror",
    ),
    pytest.param(
        Row(
            set_desired("t@.service", LOADED),
            error=InvalidInput,
            message='cannot activate template "t@.service"',
            seed={"t@.service": PLAIN},
            jobs={"t@.service": (PLAIN, INACTIVE)},
        ),
        id="set-desired-template-refused",
    ),
    pytest.param(
        Row(
            set_desired("missing.service", LAUNCHED),
            error=NotFound,
            message="unit missing.service does not exist",
        ),
        id="set-desired-missing",
    ),
    pytest.param(
        Row(
            set_desired("a/b.service", INACTIVE), error=InvalidUnitName, message="invalid unit name"
        ),
        id="set-desired-invalid-name-refused",
    ),
    # --- destroy
    pytest.param(
        Row(destroy("g.service"), result=True, seed={"g.service": GLOBAL}),
        id="destroy-removes-job-and-mirror",
    ),
    pytest.param(Row(destroy("missing.service"), result=False), id="destroy-missing"),
    pytest.param(
        Row(destroy("../x.service"), error=InvalidUnitName, message="invalid unit name"),
        id="destroy-invalid-name-refused",
    ),
    # --- put (the API's create-or-update)
    pytest.param(
        Row(
            put("a.service", None, LAUNCHED),
            error=AlreadyExists,
            message="unit does not exist and options field empty",
        ),
        id="put-new-without-file",
    ),
    pytest.param(
        Row(
            put("a.service", PLAIN, None),
            result=units.Put.CREATED,
            jobs={"a.service": (PLAIN, INACTIVE)},
        ),
        id="put-new-defaults-to-inactive",
    ),
    pytest.param(
        Row(
            put("g.service", GLOBAL, LAUNCHED),
            result=units.Put.CREATED,
            jobs={"g.service": (GLOBAL, LAUNCHED)},
            globals_=frozenset({"g.service"}),
        ),
        id="put-new-global",
    ),
    pytest.param(
        Row(
            put("a.service", PLAIN, LOADED),
            result=units.Put.DESIRED_STATE_SET,
            seed={"a.service": PLAIN},
            jobs={"a.service": (PLAIN, LOADED)},
        ),
        id="put-same-file-sets-desired",
    ),
    pytest.param(
        Row(
            put("a.service", None, LAUNCHED),
            result=units.Put.DESIRED_STATE_SET,
            seed={"a.service": PLAIN},
            jobs={"a.service": (PLAIN, LAUNCHED)},
        ),
        id="put-no-file-sets-desired",
    ),
    pytest.param(
        Row(
            put("a.service", PLAIN, None),
            error=AlreadyExists,
            message="must provide DesiredState to update existing unit",
            seed={"a.service": PLAIN},
            jobs={"a.service": (PLAIN, INACTIVE)},
        ),
        id="put-nothing-to-change",
    ),
    pytest.param(
        Row(
            put("a.service", OTHER, None),
            result=units.Put.REPLACED,
            seed={"a.service": PLAIN},
            jobs={"a.service": (OTHER, INACTIVE)},
        ),
        id="put-other-file-replaces-inactive",
    ),
    pytest.param(
        Row(
            put("t@.service", OTHER, LAUNCHED),
            error=InvalidInput,
            message='cannot activate template "t@.service"',
            seed={"t@.service": PLAIN},
            jobs={"t@.service": (PLAIN, INACTIVE)},
        ),
        id="put-template-launched-refused",
    ),
    pytest.param(
        Row(
            put("t@.service", None, LOADED),
            error=InvalidInput,
            message='cannot activate template "t@.service"',
            seed={"t@.service": PLAIN},
            jobs={"t@.service": (PLAIN, INACTIVE)},
        ),
        id="put-template-desired-refused",
    ),
]


@pytest.mark.parametrize("row", WRITES)
def test_writes(etcd: EtcdProcess, etcd_prefix: str, row: Row) -> None:
    @async_test
    async def run() -> None:
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as reg:
            for name, unit in row.seed.items():
                await units.create_unit(reg, name, unit, INACTIVE)
            before = await dump(reg)
            if row.error is not None:
                with pytest.raises(row.error) as caught:
                    await row.action(reg)
                assert str(caught.value).startswith(row.message), str(caught.value)
                assert await dump(reg) == before  # a refusal writes nothing
            else:
                result = await row.action(reg)
                if row.result is not None:
                    assert result == row.result
            jobs = await reg.list_jobs()
            assert jobs == [
                Job(name, unit.hash, desired) for name, (unit, desired) in sorted(row.jobs.items())
            ]
            # Every job's body is stored, in canonical form.
            bodies = await reg.get_unit_bodies([job.hash for job in jobs])
            assert all(UnitFile.parse(bodies[job.hash]).hash == job.hash for job in jobs)
            assert set(await reg.list_global_units()) == row.globals_

    run()


def test_create_returns_the_parsed_requirements(etcd: EtcdProcess, etcd_prefix: str) -> None:
    @async_test
    async def run() -> None:
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as reg:
            plain = await units.create_unit(reg, "a.service", PLAIN, INACTIVE)
            glob = await units.replace_unit(reg, "g.service", GLOBAL, INACTIVE)
            warned = await units.create_unit(reg, "u.service", UNKNOWN_KEY, INACTIVE)
        assert (plain.is_global, glob.is_global) == (False, True)
        assert warned.warnings == ('unrecognized requirement in [X-Fleet] section: "Bogus"',)

    run()


# --- views ---------------------------------------------------------------------------------

BROKEN_BODY = "this is not a unit file\n"
BROKEN_HASH = "b" * 40


async def seed_corrupt(reg: EtcdRegistry) -> None:
    """A good unit, a global one, and one whose stored body no longer parses
    (written past fleet.units, as an old or foreign client might)."""
    await units.create_unit(reg, "good.service", PLAIN, LAUNCHED)
    await units.create_unit(reg, "glob.service", GLOBAL, LAUNCHED)
    await reg.replace_unit("bad.service", BROKEN_BODY, BROKEN_HASH, LAUNCHED, is_global=False)


def test_a_corrupt_body_hides_only_its_unit(
    etcd: EtcdProcess, etcd_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    @async_test
    async def run() -> None:
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as reg:
            await seed_corrupt(reg)
            with caplog.at_level(logging.WARNING, logger="fleet.units"):
                listed = await units.list_units(reg)
                one = await units.get_unit(reg, "bad.service")
            assert [(i.name, i.is_global, i.current) for i in listed] == [
                ("glob.service", True, None),
                ("good.service", False, INACTIVE),
            ]
            assert one is None
            assert [r.getMessage() for r in caplog.records] == [
                f"unit body {BROKEN_HASH} in the registry does not parse; hiding bad.service"
            ] * 2
            # Still reachable by name: destroy works without a body.
            assert await units.destroy_unit(reg, "bad.service") is True

    run()


def test_a_stored_unit_over_the_size_limit_stays_usable(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    # The limit guards writes: one stored before it (or past fleet.units) is
    # still shown, raised and destroyed, and a put of its own file changes nothing.
    @async_test
    async def run() -> None:
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as reg:
            await reg.replace_unit(
                "big.service",
                OVER_LIMIT.serialize(),
                OVER_LIMIT.hash,
                INACTIVE,
                is_global=False,
            )
            info = await units.get_unit(reg, "big.service")
            assert info is not None
            assert info.unit == OVER_LIMIT
            assert [i.name for i in await units.list_units(reg)] == ["big.service"]
            done = await units.put_unit(reg, "big.service", OVER_LIMIT, LAUNCHED)
            assert done is units.Put.DESIRED_STATE_SET
            assert await reg.get_job("big.service") == Job("big.service", OVER_LIMIT.hash, LAUNCHED)
            assert await units.destroy_unit(reg, "big.service") is True

    run()


def test_get_unit_validates_the_name(etcd: EtcdProcess, etcd_prefix: str) -> None:
    @async_test
    async def run() -> None:
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as reg:
            with pytest.raises(InvalidUnitName):
                await units.get_unit(reg, "a/b.service")
            assert await units.get_unit(reg, "missing.service") is None
            assert await units.list_units(reg) == []

    run()


@pytest.mark.parametrize(
    ("machine_id", "unit_name", "expected"),
    [
        pytest.param(None, None, [("a.service", "m1"), ("a.service", "m2"), ("b.service", "m1")]),
        pytest.param("", "", [("a.service", "m1"), ("a.service", "m2"), ("b.service", "m1")]),
        pytest.param("m1", None, [("a.service", "m1"), ("b.service", "m1")]),
        pytest.param(None, "a.service", [("a.service", "m1"), ("a.service", "m2")]),
        pytest.param("m2", "a.service", [("a.service", "m2")]),
        pytest.param("m1", "a", []),
    ],
    ids=["all", "empty-is-no-filter", "machine", "unit", "both", "exact-only"],
)
def test_list_unit_states_filters(
    etcd: EtcdProcess,
    etcd_prefix: str,
    machine_id: str | None,
    unit_name: str | None,
    expected: list[tuple[str, str]],
) -> None:
    from fleet.core.model import Machine

    @async_test
    async def run() -> None:
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as reg:
            for machine in ("m1", "m2"):
                lease = await reg.register_machine(Machine(machine), ttl=10)
                for name in ("a.service", "b.service"):
                    if (name, machine) != ("b.service", "m2"):
                        state = UnitState(name, machine, "loaded", "active", "running", "")
                        await reg.publish_unit_state(lease, state)
            states = await units.list_unit_states(reg, machine_id, unit_name)
            assert [(s.name, s.machine_id) for s in states] == expected

    run()


# --- reasons tied to what they explain -------------------------------------------------------

Reason = Callable[[Job, str], PlacementReason]
STALENESS: dict[str, tuple[Reason, bool]] = {
    "current": (lambda j, fp: PlacementReason("no room", j.hash, j.desired_state, fp), True),
    "without-context": (lambda j, fp: PlacementReason("no room"), True),
    "other-content": (
        lambda j, fp: PlacementReason("no room", "f" * 40, j.desired_state, fp),
        False,
    ),
    "other-desired-state": (lambda j, fp: PlacementReason("no room", j.hash, LOADED, fp), False),
    "other-machines": (
        lambda j, fp: PlacementReason("no room", j.hash, j.desired_state, "0" * 16),
        False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(STALENESS))
def test_a_reason_is_reported_only_while_it_explains_its_unit(
    etcd: EtcdProcess, etcd_prefix: str, case: str
) -> None:
    make, reported = STALENESS[case]

    @async_test
    async def run() -> None:
        async with await EtcdRegistry.connect([etcd.endpoint], etcd_prefix) as reg:
            await units.create_unit(reg, "a.service", PLAIN, LAUNCHED)
            lease = await reg.register_machine(Machine("m1", "10.0.0.1", {"az": "a"}), ttl=30)
            job = await reg.get_job("a.service")
            assert job is not None
            fingerprint = machine_set_fingerprint(await reg.list_machines())
            engine = await reg.campaign("engine", "1", 30)
            assert engine is not None
            await reg.apply_schedule(engine, [], {"a.service": make(job, fingerprint)})
            (info,) = await units.list_units(reg)
            assert info.reason == ("no room" if reported else None)
            await reg.unregister_machine(lease)

    run()
