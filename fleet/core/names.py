"""Unit names: validation, the template/instance split, fleetctl's argument
mangling, the ``%n %N %p %i`` specifiers fleet expands in ``[X-Fleet]`` and the
one rule templates obey (:func:`check_activation`: never above ``inactive``).

A unit name is ``prefix.suffix`` or ``prefix@instance.suffix`` (a template when
the instance is empty). Everything that accepts a name from a user (fleetctl,
the API) calls :func:`validate_unit_name` or :meth:`UnitName.parse` before
writing anything, so a name that reaches the store is always one systemd would
accept and a plain file name in the units directory: no '/', no leading '.',
at most 255 bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleet.core.model import DesiredState
from fleet.errors import InvalidInput, InvalidUnitName

KNOWN_SUFFIXES: frozenset[str] = frozenset(
    {
        "automount",
        "busname",
        "device",
        "mount",
        "path",
        "scope",
        "service",
        "slice",
        "snapshot",
        "socket",
        "swap",
        "target",
        "timer",
    }
)
TEMPLATE_SUFFIXES: frozenset[str] = frozenset({"path", "service", "socket", "target", "timer"})
# systemd's UNIT_NAME_MAX (256) counts the terminating NUL, and Linux file names
# are at most 255 bytes: every name must also be a file in the units directory.
# Names are ASCII (see _ALLOWED_CHAR), so characters are bytes.
MAX_UNIT_NAME_LENGTH = 255

_ALLOWED_CHAR = re.compile(r"[a-zA-Z0-9:_.@\-\\]")
_MESSAGE_NAME_LIMIT = 64


def _shown(name: str) -> str:
    # repr() escapes control characters, so a hostile name cannot forge terminal
    # output or log lines; long names are cut so the message stays one short line.
    if len(name) > _MESSAGE_NAME_LIMIT:
        return repr(name[:_MESSAGE_NAME_LIMIT]) + f"... ({len(name)} characters)"
    return repr(name)


def validate_unit_name(name: str) -> None:
    """Raise :class:`InvalidUnitName` (one line naming the problem) unless ``name`` is valid."""

    def bad(problem: str) -> InvalidUnitName:
        return InvalidUnitName(f"invalid unit name {_shown(name)}: {problem}")

    if not name:
        raise InvalidUnitName("invalid unit name: the name is empty")
    if len(name) > MAX_UNIT_NAME_LENGTH:
        raise bad(f"longer than {MAX_UNIT_NAME_LENGTH} characters")
    for char in name:
        if not _ALLOWED_CHAR.fullmatch(char):
            raise bad(
                f"character {char!r} is not allowed (only letters, digits and the characters "
                + r"':_.@-\')"
            )
    if "." not in name:
        raise bad("missing a unit type suffix such as '.service'")
    if name.endswith("."):
        raise bad("must not end with '.'")
    if name.startswith("@"):
        raise bad("must not start with '@'")
    stem, _, suffix = name.rpartition(".")
    if suffix not in KNOWN_SUFFIXES:
        raise bad(f"unknown unit type {suffix!r} (known: {', '.join(sorted(KNOWN_SUFFIXES))})")
    at_count = stem.count("@")
    if at_count > 1:
        raise bad("contains more than one '@'")
    if at_count == 1 and suffix not in TEMPLATE_SUFFIXES:
        raise bad(
            f"'@' (template or instance) is not allowed for .{suffix} units "
            f"(only {', '.join('.' + s for s in sorted(TEMPLATE_SUFFIXES))})"
        )
    prefix = stem.partition("@")[0]
    if not prefix:
        raise bad("the part before '@' or the unit type suffix is empty")
    if name.startswith("."):
        raise bad("must not start with '.' (it would be a hidden file in the units directory)")


def _split(name: str) -> tuple[str, str | None, str]:
    """(prefix, instance, suffix) without validating; instance is None without '@'."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    if "@" in stem:
        prefix, _, instance = stem.partition("@")
        return prefix, instance, suffix
    return stem, None, suffix


def template_of(name: str) -> str | None:
    """The template ``name`` is made from, for a template (itself) or an instance
    (``foo@.service`` for ``foo@1.service``); None for a plain unit. ``name`` is
    taken as already validated: the scheduler asks this of stored names."""
    prefix, instance, suffix = _split(name)
    if instance is None:
        return None
    return f"{prefix}@.{suffix}" if suffix else f"{prefix}@"


@dataclass(frozen=True, slots=True)
class UnitName:
    """A validated unit name split into its parts (``suffix`` has no leading dot)."""

    name: str
    prefix: str
    instance: str | None  # None without '@'; "" for a template
    suffix: str

    @classmethod
    def parse(cls, name: str) -> UnitName:
        validate_unit_name(name)
        prefix, instance, suffix = _split(name)
        return cls(name=name, prefix=prefix, instance=instance, suffix=suffix)

    @property
    def is_template(self) -> bool:
        return self.instance == ""

    @property
    def is_instance(self) -> bool:
        return bool(self.instance)

    @property
    def template(self) -> str | None:
        """The template an instance is made from (``foo@.service`` for ``foo@1.service``)."""
        if not self.is_instance:
            return None
        return f"{self.prefix}@.{self.suffix}"

    def __str__(self) -> str:
        return self.name


def may_activate(name: str, desired: DesiredState) -> bool:
    """Whether ``name`` may be given the ``desired`` state: a template
    (``foo@.service``) may be stored, but only ``inactive``; it is never scheduled,
    its instances are. Raises InvalidUnitName for an invalid name."""
    is_template = UnitName.parse(name).is_template
    return desired is DesiredState.INACTIVE or not is_template


def check_activation(name: str, desired: DesiredState) -> None:
    """Raise InvalidInput (fleet's message) unless :func:`may_activate` allows it."""
    if not may_activate(name, desired):
        raise InvalidInput(f'cannot activate template "{name}"')


def _basename(arg: str) -> str:
    # Go's path.Base, which fleetctl applies to every unit argument.
    if not arg:
        return "."
    stripped = arg.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rpartition("/")[2]


def mangle_unit_name(arg: str) -> str:
    """fleetctl's argument mangling: basename of a path, ``.service`` added when no known suffix.

    Unlike fleet, a name that already ends in any known unit suffix (``foo.target``)
    is kept as it is. The result is not validated.
    """
    base = _basename(arg)
    _, dot, suffix = base.rpartition(".")
    if dot and suffix in KNOWN_SUFFIXES:
        return base
    return base + ".service"


def expand_specifiers(value: str, unit_name: str) -> str:
    """Expand ``%n %N %p %i %%`` in ``value`` for ``unit_name``; other specifiers stay as written.

    fleet expanded exactly these four (not ``%m``, ``%H``...), because only they
    are known without asking the machine the unit will land on.
    """
    if "%" not in value:
        return value
    prefix, instance, suffix = _split(unit_name)
    without_suffix = unit_name[: -(len(suffix) + 1)] if suffix else unit_name
    table = {
        "n": unit_name,
        "N": without_suffix,
        "p": prefix,
        "i": instance or "",
        "%": "%",
    }
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "%" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)
