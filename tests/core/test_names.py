"""Unit names: validation, the template/instance split, mangling and specifiers."""

from __future__ import annotations

import pytest

from fleet.core.model import DesiredState
from fleet.core.names import (
    KNOWN_SUFFIXES,
    TEMPLATE_SUFFIXES,
    UnitName,
    check_activation,
    expand_specifiers,
    mangle_unit_name,
    may_activate,
    validate_unit_name,
)
from fleet.errors import InvalidInput, InvalidUnitName


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("hello.service", id="plain"),
        pytest.param("foo@.service", id="template"),
        pytest.param("foo@1.service", id="instance"),
        pytest.param("foo@bar.baz.service", id="instance-with-dot"),
        pytest.param("a.b.c.socket", id="dots-in-prefix"),
        pytest.param("dev-sda1.device", id="device"),
        pytest.param("foo.target", id="target"),
        pytest.param("foo@x.timer", id="timer-instance"),
        pytest.param(r"run-x\x2dy.mount", id="escaped-mount"),
        pytest.param("a:b_c-d.service", id="punctuation"),
        pytest.param("x" * 247 + ".service", id="exactly-255"),
        *[pytest.param(f"u.{s}", id=f"suffix-{s}") for s in sorted(KNOWN_SUFFIXES)],
        *[pytest.param(f"u@i.{s}", id=f"template-suffix-{s}") for s in sorted(TEMPLATE_SUFFIXES)],
    ],
)
def test_valid_names(name: str) -> None:
    validate_unit_name(name)
    assert UnitName.parse(name).name == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        pytest.param("../x.service", "'/' is not allowed", id="dotdot-path"),
        pytest.param("a/b.service", "'/' is not allowed", id="slash"),
        pytest.param("x\x00.service", r"'\x00' is not allowed", id="nul"),
        pytest.param("x\n.service", r"'\n' is not allowed", id="newline"),
        pytest.param("x\x1b[31m.service", r"'\x1b' is not allowed", id="escape-sequence"),
        pytest.param("hello world.service", "' ' is not allowed", id="space"),
        pytest.param("x" * 300 + ".service", "longer than 255", id="300-chars"),
        pytest.param("x" * 248 + ".service", "longer than 255", id="256-chars"),
        pytest.param("..service", "must not start with '.'", id="dotdot-stem"),
        pytest.param(".hidden.service", "must not start with '.'", id="hidden-file"),
        pytest.param(".x@1.service", "must not start with '.'", id="hidden-instance"),
        pytest.param("foo@.mount", "not allowed for .mount", id="template-mount"),
        pytest.param("foo@1.device", "not allowed for .device", id="instance-device"),
        pytest.param("@x.service", "must not start with '@'", id="leading-at"),
        pytest.param("x.", "must not end with '.'", id="trailing-dot"),
        pytest.param("x.bogus", "unknown unit type 'bogus'", id="unknown-suffix"),
        pytest.param("hello", "missing a unit type suffix", id="no-suffix"),
        pytest.param("foo@bar@baz.service", "more than one '@'", id="two-ats"),
        pytest.param(".service", "is empty", id="only-suffix"),
        pytest.param("", "empty", id="empty"),
        pytest.param("foo.service@x", "unknown unit type", id="at-in-suffix"),
        pytest.param("héllo.service", "'é' is not allowed", id="non-ascii"),
    ],
)
def test_invalid_names(name: str, problem: str) -> None:
    with pytest.raises(InvalidUnitName) as info:
        validate_unit_name(name)
    message = str(info.value)
    assert problem in message
    assert "\n" not in message
    assert "\x00" not in message
    assert "\x1b" not in message
    assert len(message) < 300
    with pytest.raises(InvalidUnitName):
        UnitName.parse(name)


@pytest.mark.parametrize(
    ("name", "parts", "kind", "template"),
    [
        pytest.param("hello.service", ("hello", None, "service"), "plain", None, id="plain"),
        pytest.param("foo@.service", ("foo", "", "service"), "template", None, id="template"),
        pytest.param(
            "foo@1.service", ("foo", "1", "service"), "instance", "foo@.service", id="instance"
        ),
        pytest.param(
            "a.b@c.d.socket", ("a.b", "c.d", "socket"), "instance", "a.b@.socket", id="dots"
        ),
        pytest.param("x.y.timer", ("x.y", None, "timer"), "plain", None, id="dotted-plain"),
    ],
)
def test_unit_name_parts(
    name: str, parts: tuple[str, str | None, str], kind: str, template: str | None
) -> None:
    parsed = UnitName.parse(name)
    assert (parsed.prefix, parsed.instance, parsed.suffix) == parts
    assert parsed.is_template is (kind == "template")
    assert parsed.is_instance is (kind == "instance")
    assert parsed.template == template
    assert str(parsed) == name


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        pytest.param("hello", "hello.service", id="bare"),
        pytest.param("hello.service", "hello.service", id="service"),
        pytest.param("units/hello.service", "hello.service", id="relative-path"),
        pytest.param("/abs/units/hello.service", "hello.service", id="absolute-path"),
        pytest.param("foo.target", "foo.target", id="target-kept"),
        pytest.param("foo.socket", "foo.socket", id="socket-kept"),
        pytest.param("foo.slice", "foo.slice", id="slice-kept"),
        pytest.param("foo@1", "foo@1.service", id="bare-instance"),
        pytest.param("a/b/../c", "c.service", id="basename-of-dotdot"),
        pytest.param("units/", "units.service", id="trailing-slash"),
        pytest.param("foo.txt", "foo.txt.service", id="unknown-suffix"),
        pytest.param("foo.", "foo..service", id="trailing-dot"),
    ],
)
def test_mangle_unit_name(arg: str, expected: str) -> None:
    assert mangle_unit_name(arg) == expected


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        pytest.param("%n", "foo@bar.service", "foo@bar.service", id="n"),
        pytest.param("%N", "foo@bar.service", "foo@bar", id="N"),
        pytest.param("%p", "foo@bar.service", "foo", id="p-instance"),
        pytest.param("%p", "hello.service", "hello", id="p-plain"),
        pytest.param("%i", "foo@bar.service", "bar", id="i"),
        pytest.param("%i", "hello.service", "", id="i-plain"),
        pytest.param("%i", "foo@.service", "", id="i-template"),
        pytest.param("hostname=%i", "metadata@smoke1.service", "hostname=smoke1", id="metadata"),
        pytest.param("%p-sidekick@%i.service", "web@3.service", "web-sidekick@3.service", id="mix"),
        pytest.param("100%%", "a.service", "100%", id="percent"),
        pytest.param("%%i", "a@b.service", "%i", id="escaped-specifier"),
        pytest.param("%m %H %u", "a@b.service", "%m %H %u", id="unexpanded"),
        pytest.param("trailing %", "a.service", "trailing %", id="lone-percent"),
        pytest.param("no specifiers", "a.service", "no specifiers", id="none"),
        pytest.param("%i", "a@b.c.service", "b.c", id="dotted-instance"),
    ],
)
def test_expand_specifiers(value: str, unit: str, expected: str) -> None:
    assert expand_specifiers(value, unit) == expected


@pytest.mark.parametrize(
    ("name", "desired", "allowed"),
    [
        pytest.param("foo@.service", DesiredState.INACTIVE, True, id="template-inactive"),
        pytest.param("foo@.service", DesiredState.LOADED, False, id="template-loaded"),
        pytest.param("foo@.service", DesiredState.LAUNCHED, False, id="template-launched"),
        pytest.param("foo@.timer", DesiredState.LAUNCHED, False, id="template-timer"),
        pytest.param("foo@1.service", DesiredState.LAUNCHED, True, id="instance-launched"),
        pytest.param("foo.service", DesiredState.LAUNCHED, True, id="plain-launched"),
        pytest.param("foo.service", DesiredState.LOADED, True, id="plain-loaded"),
    ],
)
def test_may_activate(name: str, desired: DesiredState, allowed: bool) -> None:
    assert may_activate(name, desired) is allowed
    if allowed:
        check_activation(name, desired)
    else:
        with pytest.raises(InvalidInput, match=f'^cannot activate template "{name}"$'):
            check_activation(name, desired)


@pytest.mark.parametrize("desired", list(DesiredState), ids=[d.value for d in DesiredState])
def test_activation_check_validates_the_name_whatever_the_state(desired: DesiredState) -> None:
    with pytest.raises(InvalidUnitName):
        check_activation("bad name.service", desired)
