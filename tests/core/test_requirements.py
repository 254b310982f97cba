"""[X-Fleet] parsing and validation into Requirements."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.globs import glob_match
from fleet.core.requirements import (
    OPTION_NAMES,
    MetadataConstraint,
    MetadataOp,
    Requirements,
    parse_requirements,
    validate_unit,
)
from fleet.core.unitfile import UnitFile
from fleet.errors import InvalidRequirements, InvalidUnitName

EQ, NE, LT, LE, GT, GE = (
    MetadataOp.EQ,
    MetadataOp.NE,
    MetadataOp.LT,
    MetadataOp.LE,
    MetadataOp.GT,
    MetadataOp.GE,
)


def M(key: str, op: MetadataOp, value: str) -> MetadataConstraint:
    return MetadataConstraint(key, op, value)


def fleet_unit(*lines: str) -> UnitFile:
    return UnitFile.parse("[Service]\nExecStart=/bin/true\n[X-Fleet]\n" + "\n".join(lines) + "\n")


def parse(*lines: str, name: str = "hello.service") -> Requirements:
    return parse_requirements(name, fleet_unit(*lines))


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(["MachineID=abc"], Requirements(machine_id="abc"), id="machine-id"),
        pytest.param(
            ["MachineID=first", "MachineID=second"],
            Requirements(machine_id="first"),
            id="machine-id-first-wins",
        ),
        pytest.param(
            ["X-ConditionMachineID=old"], Requirements(machine_id="old"), id="legacy-machine-id"
        ),
        pytest.param(
            ["X-ConditionMachineBootID=boot"],
            Requirements(machine_id="boot"),
            id="legacy-boot-id",
        ),
        pytest.param(["MachineID="], Requirements(), id="empty-machine-id-ignored"),
        pytest.param(
            ["MachineOf=a.service", "MachineOf=b c.service"],
            Requirements(machine_of=("a.service", "b c.service")),
            id="machine-of-one-per-line-not-split",
        ),
        pytest.param(
            ["MachineOf=web*.service"],
            Requirements(machine_of=("web*.service",)),
            id="machine-of-not-globbed",
        ),
        pytest.param(
            ["X-ConditionMachineOf=a.service"],
            Requirements(machine_of=("a.service",)),
            id="legacy-machine-of",
        ),
        pytest.param(
            ["Conflicts=a*.service b.service", "Conflicts=c?.service"],
            Requirements(conflicts=("a*.service", "b.service", "c?.service")),
            id="conflicts-split-and-multi-line",
        ),
        pytest.param(
            ["X-Conflicts=old*.service"],
            Requirements(conflicts=("old*.service",)),
            id="legacy-conflicts",
        ),
        pytest.param(
            ["Replaces=a.service  b*.service"],
            Requirements(replaces=("a.service", "b*.service")),
            id="replaces",
        ),
        pytest.param(["Global=true"], Requirements(is_global=True), id="global"),
        pytest.param(["Global=true", "Global=false"], Requirements(), id="global-last-wins-off"),
        pytest.param(
            ["Global=no", "Global=On"], Requirements(is_global=True), id="global-last-wins-on"
        ),
        pytest.param(
            ["MachineMetadata=region=us-east-1"],
            Requirements(metadata=(M("region", EQ, "us-east-1"),)),
            id="metadata",
        ),
        pytest.param(
            ['MachineMetadata="region=us-east-1" "diskType=SSD"', "MachineMetadata=a=1 b=2"],
            Requirements(
                metadata=(
                    M("region", EQ, "us-east-1"),
                    M("diskType", EQ, "SSD"),
                    M("a", EQ, "1"),
                    M("b", EQ, "2"),
                )
            ),
            id="metadata-quoted-and-multi",
        ),
        pytest.param(
            ['MachineMetadata=name="two words"'],
            Requirements(metadata=(M("name", EQ, "two words"),)),
            id="metadata-quoted-space",
        ),
        pytest.param(
            ["X-ConditionMachineMetadata=role=db"],
            Requirements(metadata=(M("role", EQ, "db"),)),
            id="legacy-metadata",
        ),
        pytest.param(
            ["MachineMetadata=disk!=hdd mem>=16 a<=1 b<2 c>3 version>=1.2"],
            Requirements(
                metadata=(
                    M("disk", NE, "hdd"),
                    M("mem", GE, "16"),
                    M("a", LE, "1"),
                    M("b", LT, "2"),
                    M("c", GT, "3"),
                    M("version", GE, "1.2"),
                )
            ),
            id="metadata-operators",
        ),
        pytest.param(
            ["MachineMetadata=foo =x x= a=b=c a==b a!b ! = role=web"],
            Requirements(metadata=(M("role", EQ, "web"),)),
            id="metadata-malformed-terms-ignored",
        ),
        pytest.param(
            ["MachineMetadata="],
            Requirements(),
            id="metadata-empty",
        ),
    ],
)
def test_parse_each_key(lines: list[str], expected: Requirements) -> None:
    assert parse(*lines) == expected


@pytest.mark.parametrize(
    ("name", "lines", "expected"),
    [
        pytest.param(
            "metadata@smoke1.service",
            ["MachineMetadata=hostname=%i"],
            Requirements(metadata=(M("hostname", EQ, "smoke1"),)),
            id="metadata-instance",
        ),
        pytest.param(
            "pin@abc123.service",
            ["MachineID=%i"],
            Requirements(machine_id="abc123"),
            id="machine-id-instance",
        ),
        pytest.param(
            "web-sidekick@3.service",
            ["MachineOf=web@%i.service"],
            Requirements(machine_of=("web@3.service",)),
            id="machine-of-instance",
        ),
        pytest.param(
            "web@3.service",
            ["Conflicts=%p@*.service"],
            Requirements(conflicts=("web@*.service",)),
            id="conflicts-prefix",
        ),
        pytest.param(
            "a@b.service",
            ["Conflicts=%N.other %n.x 100%%"],
            Requirements(conflicts=("a@b.other", "a@b.service.x", "100%")),
            id="n-N-percent",
        ),
        pytest.param(
            "pin@.service",
            ["MachineID=%i"],
            Requirements(),
            id="template-empty-instance",
        ),
    ],
)
def test_specifiers_expanded(name: str, lines: list[str], expected: Requirements) -> None:
    assert parse(*lines, name=name) == expected


def test_other_sections_are_ignored() -> None:
    unit = UnitFile.parse("[Unit]\nMachineID=x\nConflicts=y\n[Service]\nGlobal=true\n")
    assert parse_requirements("a.service", unit) == Requirements()


def test_unknown_key_is_a_warning() -> None:
    req = parse("MachineID=abc", "Bogus=1", "MaxPerRack=2")
    assert req.machine_id == "abc"
    assert req.warnings == (
        'unrecognized requirement in [X-Fleet] section: "Bogus"',
        'unrecognized requirement in [X-Fleet] section: "MaxPerRack"',
    )


@pytest.mark.parametrize("value", ["true", "TRUE", "yes", "1", "on", "t", "T", "Yes"])
def test_global_truthy(value: str) -> None:
    assert parse(f"Global={value}").is_global


@pytest.mark.parametrize("value", ["false", "no", "0", "off", "f", "", "2", "y", "enabled"])
def test_global_falsy(value: str) -> None:
    assert not parse(f"Global={value}").is_global


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        pytest.param(
            ["MachineID=a", "MachineOf=b.service"],
            "[X-Fleet] MachineID cannot be combined with MachineOf",
            id="machineid-machineof",
        ),
        pytest.param(
            ["MachineID=a", "Conflicts=b*"],
            "[X-Fleet] MachineID cannot be combined with Conflicts",
            id="machineid-conflicts",
        ),
        pytest.param(
            ["MachineID=a", "Global=true"],
            "[X-Fleet] MachineID cannot be combined with Global",
            id="machineid-global",
        ),
        pytest.param(
            ["MachineID=a", "Replaces=b*"],
            "[X-Fleet] MachineID cannot be combined with Replaces",
            id="machineid-replaces",
        ),
        pytest.param(
            ["Global=true", "MachineOf=b.service"],
            "[X-Fleet] Global cannot be combined with MachineOf",
            id="global-machineof",
        ),
        pytest.param(
            ["Global=true", "Replaces=b*"],
            "[X-Fleet] Global cannot be combined with Replaces",
            id="global-replaces",
        ),
        pytest.param(
            ["Conflicts=a*", "Replaces=b*"],
            "[X-Fleet] Conflicts cannot be combined with Replaces",
            id="conflicts-replaces",
        ),
        pytest.param(
            ["X-ConditionMachineID=a", "X-ConditionMachineOf=b.service"],
            "[X-Fleet] MachineID cannot be combined with MachineOf",
            id="legacy-names-too",
        ),
        pytest.param(
            ["MachineOf=db.service", "Conflicts=d?.service"],
            '[X-Fleet] unresolvable requirements: MachineOf peer "db.service" '
            'matches Conflicts glob "d?.service"',
            id="peer-matches-conflict",
        ),
        pytest.param(
            ["MachineOf=db.service", "Replaces=db.*"],
            '[X-Fleet] unresolvable requirements: MachineOf peer "db.service" '
            'matches Replaces glob "db.*"',
            id="peer-matches-replace",
        ),
        pytest.param(
            ["MachineOf=hello.service"],
            '[X-Fleet] MachineOf cannot name the unit itself: "hello.service"',
            id="machine-of-self",
        ),
        pytest.param(
            ["MachineOf=%n"],
            '[X-Fleet] MachineOf cannot name the unit itself: "hello.service"',
            id="machine-of-self-by-specifier",
        ),
    ],
)
def test_invalid_combinations(lines: list[str], message: str) -> None:
    with pytest.raises(InvalidRequirements) as info:
        parse(*lines)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(["Global=false", "MachineID=a"], id="global-false-with-machine-id"),
        pytest.param(["MachineID=", "MachineOf=b.service"], id="empty-machine-id"),
        pytest.param(["Global=true", "Conflicts=x*", "MachineMetadata=a=b"], id="global-ok"),
        pytest.param(["MachineOf=db.service", "Conflicts=web*"], id="peer-not-matched"),
        pytest.param(["MachineOf=db.service", "Conflicts=[d"], id="malformed-glob-no-match"),
    ],
)
def test_allowed_combinations(lines: list[str]) -> None:
    parse(*lines)


@pytest.mark.parametrize(
    ("name", "lines", "expected"),
    [
        pytest.param(
            "web@1.service", ["MaxPerMachine=2"], Requirements(max_per_machine=2), id="max"
        ),
        pytest.param(
            "web@1.service", ["SpreadBy=zone"], Requirements(spread_by="zone"), id="spread"
        ),
        pytest.param(
            "web@1.service",
            ["MaxPerMachine=1", "SpreadBy=zone", "MachineMetadata=zone!=c"],
            Requirements(max_per_machine=1, spread_by="zone", metadata=(M("zone", NE, "c"),)),
            id="both-with-metadata",
        ),
        pytest.param(
            "web@.service", ["MaxPerMachine=3"], Requirements(max_per_machine=3), id="template"
        ),
        pytest.param(
            "web@a.socket", ["SpreadBy=%p"], Requirements(spread_by="web"), id="specifier"
        ),
        pytest.param(
            "web@1.service", ["MaxPerMachine=010"], Requirements(max_per_machine=10), id="zeros"
        ),
        pytest.param(
            "web@1.service",
            ["MachineID=abc", "MaxPerMachine=1", "SpreadBy=zone"],
            Requirements(machine_id="abc", max_per_machine=1, spread_by="zone"),
            id="with-machine-id",
        ),
    ],
)
def test_template_options(name: str, lines: list[str], expected: Requirements) -> None:
    assert parse(*lines, name=name) == expected


@pytest.mark.parametrize(
    ("name", "lines", "message"),
    [
        pytest.param(
            "web.service",
            ["MaxPerMachine=1"],
            "[X-Fleet] MaxPerMachine only applies to instances of a template "
            '(name@instance.service), not to "web.service"',
            id="max-on-a-plain-unit",
        ),
        pytest.param(
            "web.service",
            ["SpreadBy=zone"],
            "[X-Fleet] SpreadBy only applies to instances of a template "
            '(name@instance.service), not to "web.service"',
            id="spread-on-a-plain-unit",
        ),
        *(
            pytest.param(
                "web@1.service",
                [f"MaxPerMachine={v}"],
                f'[X-Fleet] MaxPerMachine must be a positive whole number, not "{v}"',
                id=f"max-{v or 'empty'}",
            )
            for v in ("0", "-1", "x", "1 2", "", "+1", "1.5", "\u0663")
        ),
        pytest.param(
            "web@1.service",
            ["MaxPerMachine=1", "MaxPerMachine=2"],
            "[X-Fleet] MaxPerMachine is given 2 times; give it once",
            id="max-twice",
        ),
        *(
            pytest.param(
                "web@1.service",
                [f"SpreadBy={v}"],
                f'[X-Fleet] SpreadBy must be one machine metadata key (such as "zone"), not "{v}"',
                id=f"spread-{v or 'empty'}",
            )
            for v in ("zone rack", "zone=a", "", "a<b", '"zone"')
        ),
        pytest.param(
            "web@1.service",
            ["SpreadBy=zone", "SpreadBy=rack"],
            "[X-Fleet] SpreadBy is given 2 times; give it once",
            id="spread-twice",
        ),
        pytest.param(
            "web@1.service",
            ["Global=true", "MaxPerMachine=1"],
            "[X-Fleet] Global cannot be combined with MaxPerMachine",
            id="global-max",
        ),
        pytest.param(
            "web@1.service",
            ["Global=true", "SpreadBy=zone"],
            "[X-Fleet] Global cannot be combined with SpreadBy",
            id="global-spread",
        ),
    ],
)
def test_template_options_refused(name: str, lines: list[str], message: str) -> None:
    with pytest.raises(InvalidRequirements) as info:
        parse(*lines, name=name)
    assert str(info.value) == message
    assert "\n" not in message


def test_validate_unit() -> None:
    unit = fleet_unit("MachineMetadata=hostname=%i")
    assert validate_unit("m@h1.service", unit).metadata == (M("hostname", EQ, "h1"),)
    assert validate_unit("m@.service", unit).metadata == ()
    with pytest.raises(InvalidUnitName):
        validate_unit("../m.service", unit)
    with pytest.raises(InvalidRequirements):
        validate_unit("m.service", fleet_unit("MachineOf=m.service"))


# Cases from Go's path/match_test.go behaviour (bad patterns match nothing).
@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        pytest.param("abc", "abc", True, id="literal"),
        pytest.param("*", "abc", True, id="star"),
        pytest.param("*c", "abc", True, id="star-suffix"),
        pytest.param("a*", "a", True, id="star-empty"),
        pytest.param("a*", "ab/c", False, id="star-no-slash"),
        pytest.param("a*/b", "abc/b", True, id="star-then-slash"),
        pytest.param("a*b*c*d*e*/f", "axbxcxdxe/f", True, id="many-stars"),
        pytest.param("a*b?c*x", "abxbbxdbxebxczzx", True, id="star-question"),
        pytest.param("a*b?c*x", "abxbbxdbxebxczzy", False, id="star-question-miss"),
        pytest.param("ab[c]", "abc", True, id="class"),
        pytest.param("ab[b-d]", "abc", True, id="range"),
        pytest.param("ab[e-g]", "abc", False, id="range-miss"),
        pytest.param("ab[^c]", "abc", False, id="negated"),
        pytest.param("ab[^b-d]", "abc", False, id="negated-range"),
        pytest.param("ab[^e-g]", "abc", True, id="negated-range-hit"),
        pytest.param("a\\*b", "a*b", True, id="escaped-star"),
        pytest.param("a\\*b", "ab", False, id="escaped-star-literal"),
        pytest.param("a?b", "a☺b", True, id="question-unicode"),
        pytest.param("a[^a]b", "a☺b", True, id="negated-unicode"),
        pytest.param("a???b", "a☺b", False, id="rune-not-byte"),
        pytest.param("a[!a]b", "a☺b", False, id="bang-is-literal"),
        pytest.param("[a-ζ]*", "α", True, id="unicode-range"),
        pytest.param("*[a-ζ]", "A", False, id="unicode-range-miss"),
        pytest.param("a?b", "a/b", False, id="question-no-slash"),
        pytest.param("a*b", "a/b", False, id="star-no-slash-2"),
        pytest.param("[\\]a]", "]", True, id="escaped-bracket"),
        pytest.param("[\\-]", "-", True, id="escaped-dash"),
        pytest.param("[x\\-]", "-", True, id="escaped-dash-2"),
        pytest.param("[x\\-]", "z", False, id="escaped-dash-miss"),
        pytest.param("[b-a]", "a", False, id="reversed-range"),
        pytest.param("[^b-a]", "a", True, id="negated-reversed-range"),
        pytest.param("[]a]", "]", False, id="bad-empty-class"),
        pytest.param("[-]", "-", False, id="bad-dash"),
        pytest.param("[x-]", "x", False, id="bad-open-range"),
        pytest.param("[-x]", "x", False, id="bad-leading-dash"),
        pytest.param("\\", "a", False, id="bad-trailing-escape"),
        pytest.param("[a-b-c]", "a", False, id="bad-double-range"),
        pytest.param("[", "a", False, id="bad-open"),
        pytest.param("[^", "a", False, id="bad-open-negated"),
        pytest.param("[^bc", "a", False, id="bad-unclosed"),
        pytest.param("a[", "a", False, id="bad-trailing-open"),
        pytest.param("*x", "xxx", True, id="star-backtrack"),
        pytest.param("hello@*.service", "hello@1.service", True, id="fleet-style"),
        pytest.param("a.service", "a.service", True, id="dot-is-literal"),
        pytest.param("a.service", "axservice", False, id="dot-not-regex"),
        pytest.param("(a|b)", "a", False, id="regex-chars-literal"),
        pytest.param("", "", True, id="empty-pattern"),
        pytest.param("", "a", False, id="empty-pattern-miss"),
        pytest.param("**", "abc", True, id="double-star"),
        pytest.param("a*", "a/b", False, id="trailing-star-no-slash"),
        # Go takes the first place a chunk fits after a star and never reconsiders;
        # with a class that can match '/', that misses a match a backtracker finds.
        pytest.param("*[*-b?]*", "b/*-", False, id="go-first-fit"),
    ],
)
def testglob_match(pattern: str, name: str, matched: bool) -> None:
    assert glob_match(pattern, name) is matched


@pytest.mark.timeout(10)
def test_glob_match_is_linear_in_stars() -> None:
    # A regex with one [^/]* per star needs ~250**30 steps here.
    assert not glob_match("*a" * 30 + "*b", "a" * 250 + ".service")
    assert glob_match("*a" * 30 + "*e", "a" * 250 + ".service")


# Every error names an option: random [X-Fleet] sections either parse or say which
# options are at fault.
_lines = st.tuples(
    st.sampled_from(
        [
            "MachineID",
            "X-ConditionMachineID",
            "MachineOf",
            "X-ConditionMachineOf",
            "MachineMetadata",
            "Conflicts",
            "X-Conflicts",
            "Replaces",
            "Global",
            "MaxPerMachine",
            "SpreadBy",
            "Unknown",
        ]
    ),
    st.sampled_from(
        [
            "",
            "a",
            "true",
            "no",
            "x.service",
            "x*",
            "*",
            "hello.service",
            "%n",
            "%p@*",
            "a=b",
            "0",
            "2",
        ]
    ),
).map(lambda kv: f"{kv[0]}={kv[1]}")


@given(st.lists(_lines, min_size=1, max_size=6), st.sampled_from(["hello.service", "x@1.service"]))
def test_every_error_names_an_option(lines: list[str], name: str) -> None:
    try:
        req = parse(*lines, name=name)
    except InvalidRequirements as exc:
        message = str(exc)
        assert message.startswith("[X-Fleet] ")
        assert any(option in message for option in OPTION_NAMES)
    else:
        # Whatever is accepted is a combination the scheduler can honour.
        assert not (req.machine_id is not None and (req.machine_of or req.is_global))
        assert not (req.machine_id is not None and (req.conflicts or req.replaces))
        assert not (req.is_global and (req.machine_of or req.replaces))
        assert not (req.conflicts and req.replaces)
        assert name not in req.machine_of
        if req.max_per_machine is not None or req.spread_by is not None:
            assert "@" in name
            assert not req.is_global
        assert req.max_per_machine is None or req.max_per_machine >= 1


# -- StopAfterDisconnect (the partition policy of a singleton) ---------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3s", 3.0), ("500ms", 0.5), ("1m30s", 90.0), ("2min", 120.0), ("30", 30.0), ("2.5", 2.5),
     ("1h", 3600.0), (" 4s ", 4.0)],
)  # fmt: skip
def test_stop_after_disconnect_values(value: str, seconds: float) -> None:
    assert parse(f"StopAfterDisconnect={value}") == Requirements(stop_after_disconnect=seconds)


def test_stop_after_disconnect_combines_with_pinning_and_templates() -> None:
    req = parse("MachineID=abc", "StopAfterDisconnect=2s")
    assert (req.machine_id, req.stop_after_disconnect) == ("abc", 2.0)
    req = parse("SpreadBy=zone", "StopAfterDisconnect=2s", name="web@1.service")
    assert (req.spread_by, req.stop_after_disconnect) == ("zone", 2.0)


@pytest.mark.parametrize("value", ["0", "0s", "-1s", "x", "3 s", "", "3d", "1e3", "s", "3s5"])
def test_stop_after_disconnect_bad_values(value: str) -> None:
    with pytest.raises(InvalidRequirements) as err:
        parse(f"StopAfterDisconnect={value}")
    assert str(err.value) == (
        "[X-Fleet] StopAfterDisconnect must be a positive duration "
        f'(such as 3s, 500ms or 1m30s), not "{value}"'
    )


def test_stop_after_disconnect_given_twice_or_on_a_global_unit() -> None:
    with pytest.raises(InvalidRequirements, match="StopAfterDisconnect is given 2 times"):
        parse("StopAfterDisconnect=1s", "StopAfterDisconnect=2s")
    with pytest.raises(
        InvalidRequirements,
        match=r"^\[X-Fleet\] Global cannot be combined with StopAfterDisconnect$",
    ):
        parse("Global=true", "StopAfterDisconnect=1s")
