"""Unit files: parsing, the canonical form, the hash and their invariants."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.unitfile import LINE_MAX, UnitFile, UnitOption
from fleet.errors import InvalidUnitFile

Opt = UnitOption


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[Unit]\nDescription=hi\n",
            [Opt("Unit", "Description", "hi")],
            id="minimal",
        ),
        pytest.param(
            "[Unit]\n  Description   =   spaced out  \n",
            [Opt("Unit", "Description", "spaced out")],
            id="whitespace-trimmed",
        ),
        pytest.param(
            "# leading comment\n; another\n\n[Unit]\n# inside\nA=1\n\n\n;x\nB=2\n",
            [Opt("Unit", "A", "1"), Opt("Unit", "B", "2")],
            id="comments-and-blanks",
        ),
        pytest.param(
            "[Service]\nExecStart=/bin/echo a \\\n    b \\\n  c\n",
            [Opt("Service", "ExecStart", "/bin/echo a b c")],
            id="continuation",
        ),
        pytest.param(
            "[Service]\nExecStart=/bin/echo a \\\n# skipped comment\n; skipped too\n  b\n",
            [Opt("Service", "ExecStart", "/bin/echo a b")],
            id="comment-inside-continuation",
        ),
        pytest.param(
            "[Service]\nExecStart=/bin/echo a\\\n",
            [Opt("Service", "ExecStart", "/bin/echo a")],
            id="continuation-at-eof",
        ),
        pytest.param(
            "[Service]\nA=x\\\\\nB=y\n",
            [Opt("Service", "A", "x\\\\"), Opt("Service", "B", "y")],
            id="escaped-backslash-is-not-continuation",
        ),
        pytest.param(
            "[Unit]\nAfter=a\nAfter=b\nAfter=\nAfter=c\n",
            [
                Opt("Unit", "After", "a"),
                Opt("Unit", "After", "b"),
                Opt("Unit", "After", ""),
                Opt("Unit", "After", "c"),
            ],
            id="repeated-and-empty-assignment",
        ),
        pytest.param(
            "[Service]\nEnvironment=A=b#c ;d\n",
            [Opt("Service", "Environment", "A=b#c ;d")],
            id="equals-and-hash-in-value",
        ),
        pytest.param(
            "[Unit]\nA=1\n[Service]\nB=2\n[Unit]\nC=3\n",
            [Opt("Unit", "A", "1"), Opt("Unit", "C", "3"), Opt("Service", "B", "2")],
            id="sections-grouped-first-seen",
        ),
        pytest.param(
            "[Unit]\rA=1\rB=2 \\\r 3\n",
            [Opt("Unit", "A", "1"), Opt("Unit", "B", "2 3")],
            id="lone-cr-is-a-line-break",
        ),
        pytest.param(
            "\ufeff[Unit]\r\nA=1\r\n",
            [Opt("Unit", "A", "1")],
            id="bom-and-crlf",
        ),
        pytest.param(
            "[Unit]\nA=1",
            [Opt("Unit", "A", "1")],
            id="no-final-newline",
        ),
        pytest.param(
            "[Empty]\n[Unit]\nA=1\n",
            [Opt("Unit", "A", "1")],
            id="empty-section-dropped",
        ),
        pytest.param(
            "[Unit]\nDescription=tab\there\n",
            [Opt("Unit", "Description", "tab\there")],
            id="inner-tab-kept",
        ),
        pytest.param(
            b"[Unit]\nDescription=caf\xc3\xa9\n",
            [Opt("Unit", "Description", "café")],
            id="utf8-bytes",
        ),
    ],
)
def test_parse(text: str | bytes, expected: list[UnitOption]) -> None:
    unit = UnitFile.parse(text)
    assert list(unit.options) == expected
    assert UnitFile.parse(unit.serialize()) == unit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "unit file has no options", id="empty"),
        pytest.param("# only\n\n; comments\n", "unit file has no options", id="only-comments"),
        pytest.param("[Unit]\n", "unit file has no options", id="only-section"),
        pytest.param(
            "A=1\n[Unit]\n", "line 1: option outside of any [Section]", id="before-section"
        ),
        pytest.param("[Unit]\nA=1\njunk\n", "line 3: expected 'Name=Value'", id="no-equals"),
        pytest.param("[Unit]\n=value\n", "line 2: empty option name", id="empty-key"),
        pytest.param("[Unit\nA=1\n", "line 1: section header is missing", id="unclosed-section"),
        pytest.param("[]\nA=1\n", "line 1: invalid section header", id="empty-section"),
        pytest.param("[Unit]\nA=1\x00\n", "line 2: unit file contains a NUL byte", id="nul"),
        pytest.param(b"[Unit]\nA=\xff\n", "not valid UTF-8", id="invalid-utf8-bytes"),
        pytest.param("[Unit]\nA=\udcff\n", "line 2: unit file is not valid UTF-8", id="surrogate"),
        pytest.param("[Unit]\r\nA=1\r\nB\r\n", "line 3: expected", id="crlf-line-numbers"),
        pytest.param(
            "[Unit]\nA=" + "x" * LINE_MAX + "\n", f"line 2: longer than {LINE_MAX}", id="long-line"
        ),
        pytest.param(
            "[Unit]\nA=" + "x" * 1500 + " \\\n" + "y" * 1500 + "\n",
            f"line 2: option A is longer than {LINE_MAX}",
            id="long-continued-line",
        ),
        pytest.param(
            "[Unit]\nA=x\\ \\\n", "line 2: value of A ends with an unescaped", id="odd-bs"
        ),
    ],
)
def test_parse_errors(text: str | bytes, message: str) -> None:
    with pytest.raises(InvalidUnitFile) as info:
        UnitFile.parse(text)
    assert message in str(info.value)


def test_line_of_exactly_line_max_bytes_is_accepted() -> None:
    value = "x" * (LINE_MAX - 2)
    assert UnitFile.parse(f"[Unit]\nA={value}\n").values("Unit", "A") == [value]


# fleet's README example, written the way people write it (comments, spacing).
HELLO_SOURCE = """\
# hello.service from fleet's README
[Unit]
Description=My Service
After = docker.service

[Service]
TimeoutStartSec=0
ExecStartPre=-/usr/bin/docker kill hello
ExecStartPre=-/usr/bin/docker rm hello
ExecStartPre=/usr/bin/docker pull busybox
ExecStart=/usr/bin/docker run --name hello busybox /bin/sh -c \\
    "trap 'exit 0' INT TERM; while true; do echo Hello World; sleep 1; done"
ExecStop=/usr/bin/docker stop hello

[X-Fleet]
Conflicts=hello*
"""

HELLO_CANONICAL = """\
[Unit]
Description=My Service
After=docker.service

[Service]
TimeoutStartSec=0
ExecStartPre=-/usr/bin/docker kill hello
ExecStartPre=-/usr/bin/docker rm hello
ExecStartPre=/usr/bin/docker pull busybox
ExecStart=/usr/bin/docker run --name hello busybox /bin/sh -c "trap 'exit 0' INT TERM; \
while true; do echo Hello World; sleep 1; done"
ExecStop=/usr/bin/docker stop hello

[X-Fleet]
Conflicts=hello*
"""


def test_canonical_form_of_fleets_example() -> None:
    unit = UnitFile.parse(HELLO_SOURCE)
    assert unit.serialize() == HELLO_CANONICAL
    assert unit.hash == hashlib.sha1(HELLO_CANONICAL.encode()).hexdigest()
    assert unit.short_hash == unit.hash[:7]
    assert unit.description == "My Service"
    assert unit.sections() == ["Unit", "Service", "X-Fleet"]
    assert len(unit.values("Service", "ExecStartPre")) == 3
    assert unit.values("Service", "Missing") == []
    assert not unit.has_install


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(HELLO_CANONICAL, id="canonical"),
        pytest.param(HELLO_CANONICAL.replace("\n\n", "\n\n\n# gap\n\n"), id="more-blanks"),
        pytest.param(HELLO_CANONICAL.replace("=", " = ", 1), id="spaces-around-equals"),
        pytest.param(HELLO_CANONICAL.replace("\n", "\r\n"), id="crlf"),
        pytest.param("; top\n" + HELLO_CANONICAL + "\n# tail\n", id="comments"),
    ],
)
def test_hash_ignores_formatting(variant: str) -> None:
    assert UnitFile.parse(variant).hash == UnitFile.parse(HELLO_SOURCE).hash


def test_hash_depends_on_meaning() -> None:
    base = UnitFile.parse("[Unit]\nA=1\n[Service]\nB=2\n")
    assert UnitFile.parse("[Service]\nB=2\n[Unit]\nA=1\n").hash != base.hash
    assert UnitFile.parse("[Unit]\nA=1\n[Service]\nB=3\n").hash != base.hash
    assert UnitFile.parse("[Unit]\nA=1\nA=1\n[Service]\nB=2\n").hash != base.hash


@pytest.mark.parametrize(
    ("text", "description", "has_install"),
    [
        pytest.param("[Unit]\nDescription=a\nDescription=b\n", "b", False, id="last-description"),
        pytest.param("[Service]\nDescription=x\n", "", False, id="description-only-in-unit"),
        pytest.param("[Unit]\nA=1\n[Install]\nWantedBy=x.target\n", "", True, id="install"),
    ],
)
def test_description_and_install(text: str, description: str, has_install: bool) -> None:
    unit = UnitFile.parse(text)
    assert unit.description == description
    assert unit.has_install is has_install


@pytest.mark.parametrize(
    "option",
    [
        pytest.param(Opt("Unit", "A", " padded"), id="value-leading-space"),
        pytest.param(Opt("Unit", "A", "two\nlines"), id="value-newline"),
        pytest.param(Opt("Unit", "A", "two\rlines"), id="value-carriage-return"),
        pytest.param(Opt("Unit", "A", "ends\\"), id="value-trailing-backslash"),
        pytest.param(Opt("Unit", "", "x"), id="empty-name"),
        pytest.param(Opt("Unit", "#A", "x"), id="comment-name"),
        pytest.param(Opt("Unit", "A=B", "x"), id="equals-in-name"),
        pytest.param(Opt("", "A", "x"), id="empty-section"),
        pytest.param(Opt("Un]it", "A", "x"), id="bracket-in-section"),
        pytest.param(Opt("Unit", "A", "x" * LINE_MAX), id="too-long"),
        # "[" + section + "]" is a line of its own: parse would refuse it.
        pytest.param(Opt("S" * (LINE_MAX - 1), "A", "x"), id="section-header-too-long"),
        pytest.param(Opt("Unit", "A", "\x00"), id="nul"),
    ],
)
def test_from_options_refuses_what_parse_could_not_produce(option: UnitOption) -> None:
    with pytest.raises(InvalidUnitFile):
        UnitFile.from_options([option])


def test_longest_section_header_round_trips() -> None:
    unit = UnitFile.from_options([Opt("S" * (LINE_MAX - 2), "A", "x")])
    assert UnitFile.parse(unit.serialize()) == unit


def test_from_options_groups_and_refuses_empty() -> None:
    unit = UnitFile.from_options([Opt("A", "x", "1"), Opt("B", "y", "2"), Opt("A", "z", "3")])
    assert unit.options == (Opt("A", "x", "1"), Opt("A", "z", "3"), Opt("B", "y", "2"))
    assert unit == UnitFile.parse("[A]\nx=1\n[B]\ny=2\n[A]\nz=3\n")
    assert unit.serialize() == "[A]\nx=1\nz=3\n\n[B]\ny=2\n"
    with pytest.raises(InvalidUnitFile, match="no options"):
        UnitFile.from_options([])


# --- properties ----------------------------------------------------------------------------

# Biased towards the characters the syntax gives a meaning to.
_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(' \t\\=#;[]"%')),
        st.characters(codec="utf-8", exclude_characters="\x00\n\r"),
    ),
    max_size=30,
)
_sections = st.sampled_from(["Unit", "Service", "X-Fleet", "Install", "Socket", "Weird Section"])
_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True)


def _make_value(core: str, tail: str) -> str:
    # Values are trimmed and never end in an odd run of backslashes (that would be
    # a continuation); the tail puts an escaped "\\" at the end often enough.
    value = core.strip(" \t")
    while value.endswith("\\"):
        value = value.rstrip("\\").strip(" \t")
    return value + tail


_values = st.builds(_make_value, _text, st.sampled_from(["", "\\\\", "=\\\\\\\\", "#x ;y", ";"]))
_options = st.builds(UnitOption, _sections, _names, _values)
unit_files = st.lists(_options, min_size=1, max_size=12).map(UnitFile.from_options)


@given(unit_files)
def test_parse_serialize_round_trip(unit: UnitFile) -> None:
    text = unit.serialize()
    assert UnitFile.parse(text) == unit
    assert UnitFile.parse(text).serialize() == text
    assert text.endswith("\n")
    assert not text.endswith("\n\n")


_noise = st.sampled_from(["", "\n", "# comment\n", "; note = x\n", "   \n", "\t\n"])


@given(unit_files, st.data())
def test_hash_ignores_comments_blank_lines_and_spaces(unit: UnitFile, data: st.DataObject) -> None:
    lines: list[str] = []
    section: str | None = None
    for option in unit.options:
        if option.section != section:
            lines.append(data.draw(_noise) + f"[{option.section}]\n")
            section = option.section
        left = data.draw(st.sampled_from(["", " ", "\t", "  "]))
        right = data.draw(st.sampled_from(["", " ", "\t"]))
        indent = data.draw(st.sampled_from(["", " "]))
        lines.append(
            data.draw(_noise) + f"{indent}{option.name}{left}={right}{option.value}{right}\n"
        )
    noisy = "".join(lines) + data.draw(_noise)
    reparsed = UnitFile.parse(noisy)
    assert reparsed == unit
    assert reparsed.hash == unit.hash
