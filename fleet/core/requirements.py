"""[X-Fleet] requirements as data: what a unit asks of the machine it runs on.

Parsed once, at submit time, from a unit file into a frozen
:class:`Requirements`; invalid combinations are rejected there with a message
naming the options. The scheduler and the agent only ever see this data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from fleet.core.globs import glob_match
from fleet.core.names import expand_specifiers, template_of, validate_unit_name
from fleet.core.unitfile import UnitFile
from fleet.errors import InvalidRequirements


class MetadataOp(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True, slots=True)
class MetadataConstraint:
    """One ``key<op>value`` term of ``MachineMetadata``."""

    key: str
    op: MetadataOp
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


@dataclass(frozen=True, slots=True)
class Requirements:
    """Everything ``[X-Fleet]`` says, with specifiers (%n %N %p %i) already expanded."""

    machine_id: str | None = None
    machine_of: tuple[str, ...] = ()
    metadata: tuple[MetadataConstraint, ...] = ()
    conflicts: tuple[str, ...] = ()  # globs (fleet's path.Match syntax)
    replaces: tuple[str, ...] = ()  # globs
    is_global: bool = False
    max_per_machine: int | None = None  # at most this many instances of its template per machine
    spread_by: str | None = None  # a machine metadata key its template's instances spread over
    # Seconds an agent cut from etcd keeps the unit running before it stops it itself
    # (None: it keeps running however long the cut lasts, B7).
    stop_after_disconnect: float | None = None
    warnings: tuple[str, ...] = ()  # e.g. unknown [X-Fleet] keys


# --- parsing ---------------------------------------------------------------------------------

SECTION = "X-Fleet"

# Canonical option -> every key spelling fleet accepted for it (legacy names included).
_ALIASES: dict[str, tuple[str, ...]] = {
    "MachineID": ("MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID"),
    "MachineOf": ("MachineOf", "X-ConditionMachineOf"),
    "MachineMetadata": ("MachineMetadata", "X-ConditionMachineMetadata"),
    "Conflicts": ("Conflicts", "X-Conflicts"),
    "Replaces": ("Replaces",),
    "Global": ("Global",),
    "MaxPerMachine": ("MaxPerMachine",),
    "SpreadBy": ("SpreadBy",),
    "StopAfterDisconnect": ("StopAfterDisconnect",),
}
_CANONICAL: dict[str, str] = {
    alias: name for name, aliases in _ALIASES.items() for alias in aliases
}
OPTION_NAMES: frozenset[str] = frozenset(_ALIASES)
TRUTHY: frozenset[str] = frozenset({"true", "yes", "1", "on", "t"})

# Key and value may not contain operator characters: fleet ignored anything not of
# the exact form k=v (so "a=b=c" is dropped), and this keeps "a<=1" unambiguous.
_METADATA_TERM = re.compile(r"([^=!<>]+)(!=|<=|>=|=|<|>)([^=!<>]+)")

# Pairs of options that cannot be honoured together, checked in this order.
_FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("MachineID", "MachineOf"),
    ("MachineID", "Conflicts"),
    ("MachineID", "Global"),
    ("MachineID", "Replaces"),
    ("Global", "MachineOf"),
    ("Global", "Replaces"),
    ("Conflicts", "Replaces"),
    ("Global", "MaxPerMachine"),
    ("Global", "SpreadBy"),
    # A global unit runs on every machine: there is no second copy to avoid.
    ("Global", "StopAfterDisconnect"),
)
# The options about a template's instances, and the one value each takes.
_TEMPLATE_OPTIONS = ("MaxPerMachine", "SpreadBy")
_SINGLE_OPTIONS = (*_TEMPLATE_OPTIONS, "StopAfterDisconnect")
_SPREAD_KEY = re.compile(r"[^=!<>\s\"]+")


def split_metadata_terms(line: str) -> list[str]:
    """Split one ``MachineMetadata`` value into terms, as fleet did.

    Spaces separate terms except inside double quotes; the quotes themselves are
    dropped wherever they appear (``region="us east"`` is ``region=us east``).
    """
    terms: list[str] = []
    current: list[str] = []
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term]


def parse_metadata_term(term: str) -> MetadataConstraint | None:
    """``key<op>value`` -> constraint; None for anything fleet would ignore (``foo``, ``=x``)."""
    match = _METADATA_TERM.fullmatch(term)
    if match is None:
        return None
    key, op, value = match.group(1).strip(), match.group(2), match.group(3).strip()
    if not key or not value:
        return None
    return MetadataConstraint(key, MetadataOp(op), value)


def is_truthy(value: str) -> bool:
    return value.strip().lower() in TRUTHY


def parse_requirements(unit_name: str, unit: UnitFile) -> Requirements:
    """Read ``[X-Fleet]`` of ``unit`` (named ``unit_name``) into :class:`Requirements`.

    Specifiers are expanded with ``unit_name`` first. Empty values are ignored for
    every list-valued option (``MachineID=`` does not pin to the empty id). Unknown
    keys only produce a warning. Raises :class:`InvalidRequirements` for option
    combinations the scheduler could never honour.
    """
    machine_ids: list[str] = []
    machine_of: list[str] = []
    metadata: list[MetadataConstraint] = []
    conflicts: list[str] = []
    replaces: list[str] = []
    is_global = False
    single: dict[str, list[str]] = {option: [] for option in _SINGLE_OPTIONS}
    warnings: list[str] = []
    for option in unit.options:
        if option.section != SECTION:
            continue
        canonical = _CANONICAL.get(option.name)
        if canonical is None:
            warnings.append(f'unrecognized requirement in [X-Fleet] section: "{option.name}"')
            continue
        value = expand_specifiers(option.value, unit_name)
        if canonical == "MachineID":
            if value:
                machine_ids.append(value)
        elif canonical == "MachineOf":
            if value:
                machine_of.append(value)
        elif canonical == "MachineMetadata":
            for term in split_metadata_terms(value):
                constraint = parse_metadata_term(term)
                if constraint is not None:
                    metadata.append(constraint)
        elif canonical == "Conflicts":
            conflicts.extend(value.split())
        elif canonical == "Replaces":
            replaces.extend(value.split())
        elif canonical in single:
            single[canonical].append(value)
        else:  # Global: the last value wins
            is_global = is_truthy(value)

    requirements = Requirements(
        machine_id=machine_ids[0] if machine_ids else None,
        machine_of=tuple(machine_of),
        metadata=tuple(metadata),
        conflicts=tuple(conflicts),
        replaces=tuple(replaces),
        is_global=is_global,
        max_per_machine=_max_per_machine(single["MaxPerMachine"]),
        spread_by=_spread_by(single["SpreadBy"]),
        stop_after_disconnect=_stop_after_disconnect(single["StopAfterDisconnect"]),
        warnings=tuple(warnings),
    )
    _check(unit_name, requirements)
    return requirements


def _one_value(option: str, values: list[str]) -> str | None:
    if len(values) > 1:
        raise InvalidRequirements(f"[X-Fleet] {option} is given {len(values)} times; give it once")
    return values[0] if values else None


def _max_per_machine(values: list[str]) -> int | None:
    value = _one_value("MaxPerMachine", values)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise InvalidRequirements(
            f'[X-Fleet] MaxPerMachine must be a positive whole number, not "{value}"'
        )
    return int(value)


def _spread_by(values: list[str]) -> str | None:
    value = _one_value("SpreadBy", values)
    if value is None:
        return None
    if not _SPREAD_KEY.fullmatch(value):
        raise InvalidRequirements(
            f'[X-Fleet] SpreadBy must be one machine metadata key (such as "zone"), not "{value}"'
        )
    return value


_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION_TERM = re.compile(r"(\d+(?:\.\d+)?)(ms|min|s|m|h)")
_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(text: str) -> float | None:
    """A duration as fleet writes them (``30s``, ``1m30s``, ``500ms``, ``2min``) or a bare
    number of seconds (``30``, ``2.5``) -> seconds; None if it is neither."""
    text = text.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    total, pos = 0.0, 0
    while pos < len(text):
        match = _DURATION_TERM.match(text, pos)
        if match is None:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if text else None


def _stop_after_disconnect(values: list[str]) -> float | None:
    value = _one_value("StopAfterDisconnect", values)
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is None or not 0 < seconds < 1e9:
        raise InvalidRequirements(
            "[X-Fleet] StopAfterDisconnect must be a positive duration "
            f'(such as 3s, 500ms or 1m30s), not "{value}"'
        )
    return seconds


def _template_options(req: Requirements) -> tuple[str, ...]:
    """The options of ``req`` that only a template instance can honour."""
    present = (req.max_per_machine is not None, req.spread_by is not None)
    return tuple(o for o, on in zip(_TEMPLATE_OPTIONS, present, strict=True) if on)


def _check(unit_name: str, req: Requirements) -> None:
    if unit_name in req.machine_of:
        raise InvalidRequirements(f'[X-Fleet] MachineOf cannot name the unit itself: "{unit_name}"')
    for peer in req.machine_of:
        for option, globs in (("Conflicts", req.conflicts), ("Replaces", req.replaces)):
            for glob in globs:
                if glob_match(glob, peer):
                    raise InvalidRequirements(
                        f'[X-Fleet] unresolvable requirements: MachineOf peer "{peer}" '
                        f'matches {option} glob "{glob}"'
                    )
    present = {
        "MachineID": req.machine_id is not None,
        "MachineOf": bool(req.machine_of),
        "Conflicts": bool(req.conflicts),
        "Replaces": bool(req.replaces),
        "Global": req.is_global,
        "MaxPerMachine": req.max_per_machine is not None,
        "SpreadBy": req.spread_by is not None,
        "StopAfterDisconnect": req.stop_after_disconnect is not None,
    }
    for first, second in _FORBIDDEN:
        if present[first] and present[second]:
            raise InvalidRequirements(f"[X-Fleet] {first} cannot be combined with {second}")
    options = _template_options(req)
    if options and template_of(unit_name) is None:
        raise InvalidRequirements(
            f"[X-Fleet] {options[0]} only applies to instances of a template "
            f'(name@instance.service), not to "{unit_name}"'
        )


def validate_unit(name: str, unit: UnitFile) -> Requirements:
    """The one check fleetctl and the API run before writing a unit: name, then [X-Fleet].

    Templates (``foo@.service``) are validated like any other unit: their
    specifiers expand with an empty instance, which is harmless because a template
    is never scheduled; its instances are validated under their own names.
    """
    validate_unit_name(name)
    return parse_requirements(name, unit)
