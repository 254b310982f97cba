"""Globs with Go ``path.Match`` semantics and MachineMetadata matching (fleet + B4 operators)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.matching import GlobSet, glob_match, metadata_matches, unmet_metadata
from fleet.core.requirements import MetadataConstraint, MetadataOp

BAD = None  # a malformed pattern: must match nothing

# (pattern, name, expected); expected None means "malformed" (so: no match).
GLOBS: list[tuple[str, str, bool | None]] = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*", "", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "a", False),
    ("[z-a]", "m", False),  # an inverted range is legal and matches nothing
    ("[^z-a]", "m", True),
    ("*x", "xxx", True),
    ("a*a", "a", False),
    ("conflict.*.service", "conflict.0.service", True),
    ("conflict.*.service", "conflict.service", False),
    ("conflict.[0-2].service", "conflict.2.service", True),
    ("conflict.[0-2].service", "conflict.3.service", False),
    ("hello@*.service", "hello@1.service", True),
    ("foo\\x2dbar.service", "foox2dbar.service", True),  # backslash escapes the next char
    ("[]a]", "]", BAD),
    ("[]", "]", BAD),
    ("[-]", "-", BAD),
    ("[x-]", "x", BAD),
    ("[-x]", "x", BAD),
    ("[a-b-c]", "a", BAD),
    ("[^]", "x", BAD),
    ("\\", "a", BAD),
    ("ab\\", "ab", BAD),
    ("[", "a", BAD),
    ("[^bc", "a", BAD),
    ("a[", "a", BAD),
    ("a[\\", "a", BAD),
    ("*[", "abc", BAD),
]


@pytest.mark.parametrize(
    ("pattern", "name", "expected"), GLOBS, ids=[f"{p!r}~{n!r}" for p, n, _ in GLOBS]
)
def test_glob_match(pattern: str, name: str, expected: bool | None) -> None:
    assert glob_match(pattern, name) is bool(expected)
    # The scheduler's fast multi-pattern matcher must agree with the reference one.
    assert GlobSet([pattern]).matches(name) is bool(expected)
    assert GlobSet(["nothing-matches-this", pattern]).matches(name) is bool(expected)


@pytest.mark.parametrize(
    ("patterns", "name", "first"),
    [
        (("a.service", "b*.service"), "b1.service", "b*.service"),
        (("b?.service", "b*.service"), "b1.service", "b?.service"),
        (("[", "x*"), "xy", "x*"),
        (("x*",), "y", None),
        ((), "y", None),
    ],
    ids=["literal-then-star", "first-in-unit-order", "malformed-skipped", "no-match", "empty"],
)
def test_globset_first(patterns: tuple[str, ...], name: str, first: str | None) -> None:
    assert GlobSet(patterns).first(name) == first


_glob_chars = st.sampled_from(list("ab.*?[]^-\\/"))
_name_chars = st.sampled_from(list("ab.-/\\]"))


@given(st.lists(st.text(_glob_chars, max_size=7), max_size=3), st.text(_name_chars, max_size=7))
def test_globset_agrees_with_glob_match(patterns: list[str], name: str) -> None:
    expected = any(glob_match(p, name) for p in patterns)
    assert GlobSet(patterns).matches(name) is expected


def c(key: str, op: str, value: str) -> MetadataConstraint:
    return MetadataConstraint(key, MetadataOp(op), value)


MD: list[tuple[str, list[MetadataConstraint], dict[str, str], bool]] = [
    ("no-constraints", [], {}, True),
    ("eq", [c("region", "=", "us")], {"region": "us"}, True),
    ("eq-differs", [c("region", "=", "us")], {"region": "eu"}, False),
    ("eq-missing-key", [c("region", "=", "us")], {}, False),
    (
        "same-key-ored",
        [c("region", "=", "us"), c("region", "=", "eu")],
        {"region": "eu"},
        True,
    ),
    (
        "different-keys-anded",
        [c("region", "=", "us"), c("disk", "=", "ssd")],
        {"region": "us", "disk": "hdd"},
        False,
    ),
    (
        "or-group-and-other-key",
        [c("region", "=", "us"), c("disk", "=", "ssd"), c("region", "=", "eu")],
        {"region": "eu", "disk": "ssd"},
        True,
    ),
    ("ne-differs", [c("disk", "!=", "hdd")], {"disk": "ssd"}, True),
    ("ne-equal", [c("disk", "!=", "hdd")], {"disk": "hdd"}, False),
    ("ne-missing-key-holds", [c("disk", "!=", "hdd")], {}, True),
    ("ne-terms-anded", [c("disk", "!=", "hdd"), c("disk", "!=", "ssd")], {"disk": "ssd"}, False),
    ("ne-not-in-eq-group", [c("az", "=", "a"), c("az", "!=", "a")], {"az": "a"}, False),
    ("ge-int", [c("mem", ">=", "16")], {"mem": "16"}, True),
    ("gt-int", [c("mem", ">", "16")], {"mem": "16"}, False),
    ("lt-numeric-not-lexical", [c("mem", "<", "100")], {"mem": "9"}, True),
    ("le-negative", [c("t", "<=", "-1")], {"t": "-2"}, True),
    ("gt-decimal", [c("ghz", ">", "2.5")], {"ghz": "2.75"}, True),
    ("ge-missing-key-fails", [c("mem", ">=", "1")], {}, False),
    ("version-three-parts", [c("kernel", ">", "1.2.9")], {"kernel": "1.2.10"}, True),
    ("version-v-prefix", [c("ver", ">=", "v1.9")], {"ver": "v1.10"}, True),
    ("version-padding-equal", [c("ver", ">=", "1.2.0")], {"ver": "v1.2"}, True),
    ("version-lt", [c("ver", "<", "2.0.0")], {"ver": "10.0.0"}, False),
    ("two-part-is-a-number", [c("ver", ">=", "1.2")], {"ver": "1.10"}, False),
    ("not-comparable", [c("mem", ">=", "16")], {"mem": "lots"}, False),
    ("not-comparable-mixed", [c("ver", ">=", "1.2.3")], {"ver": "1.2.3-rc1"}, False),
    ("eq-is-string-equality", [c("mem", "=", "16")], {"mem": "16.0"}, False),
    ("range", [c("mem", ">=", "8"), c("mem", "<", "32")], {"mem": "16"}, True),
]


@pytest.mark.parametrize(
    ("constraints", "metadata", "expected"), [m[1:] for m in MD], ids=[m[0] for m in MD]
)
def test_metadata_matches(
    constraints: list[MetadataConstraint], metadata: dict[str, str], expected: bool
) -> None:
    assert metadata_matches(constraints, metadata) is expected
    # unmet_metadata must agree: empty exactly when everything holds.
    assert (unmet_metadata(constraints, metadata) == []) is expected


@pytest.mark.parametrize(
    ("constraints", "metadata", "lines"),
    [
        (
            [c("region", "=", "us-east-1"), c("region", "=", "us-west-1")],
            {"region": "eu-west-1"},
            ["region=us-east-1 or us-west-1 (machine has region=eu-west-1)"],
        ),
        ([c("region", "=", "us")], {}, ["region=us (machine has no region)"]),
        (
            [c("mem", ">=", "16"), c("disk", "!=", "hdd")],
            {"mem": "8", "disk": "hdd"},
            ["mem>=16 (machine has mem=8)", "disk!=hdd (machine has disk=hdd)"],
        ),
        (
            [c("mem", ">=", "16")],
            {"mem": "lots"},
            ["mem>=16 (machine has mem=lots: not comparable as numbers or versions)"],
        ),
        ([c("region", "=", "us"), c("mem", ">", "1")], {"region": "us", "mem": "2"}, []),
    ],
    ids=["or-group", "missing-key", "operators", "not-comparable", "all-met"],
)
def test_unmet_metadata_texts(
    constraints: list[MetadataConstraint], metadata: dict[str, str], lines: list[str]
) -> None:
    assert unmet_metadata(constraints, metadata) == lines
