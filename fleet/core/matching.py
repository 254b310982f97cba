"""Matching primitives of the scheduler: unit-name globs and machine metadata.

``glob_match`` gives fleet's ``Conflicts``/``Replaces`` patterns Go ``path.Match``
semantics (not :mod:`fnmatch`'s, whose classes use ``!`` and which has no
escapes). ``metadata_matches``/``unmet_metadata`` decide ``MachineMetadata``:
fleet's rule (all ``=`` values of one key are OR-ed, different keys AND-ed)
plus the comparison operators of feature B4. Precise operator semantics:

* All ``key=value`` terms of one key form one OR-group: the machine must have
  the key with one of those values (string equality).
* Every other term must hold on its own (AND with everything else).
* ``key!=value`` holds when the machine lacks the key or has another value.
* ``<``, ``<=``, ``>``, ``>=`` fail when the machine lacks the key. Otherwise
  both sides are compared as decimal numbers when both parse as numbers
  (``16``, ``-2``, ``2.5``); else as versions when both are dotted versions
  with an optional leading ``v`` (``1.2.10`` > ``1.2.9``, ``v1.10`` > ``v1.9``,
  missing parts count as 0 so ``1.2`` == ``1.2.0``); else the term does not
  hold. Because numbers win, ``1.10`` < ``1.2``: write ``v1.10`` or
  ``1.10.0`` to get version order for two-part versions.

Everything here is pure; compiled patterns and grouped constraints are cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from fleet.core.globs import glob_match
from fleet.core.requirements import MetadataConstraint, MetadataOp

__all__ = ["GlobSet", "glob_match", "glob_set", "metadata_matches", "unmet_metadata"]


class GlobSet:
    """Several globs (a unit's ``Conflicts`` or ``Replaces``) matched as one.

    The scheduler asks "does any of these globs match that name?" very often, over
    patterns that differ per unit (``%i`` expands per instance), so compiling each
    into a regex would dominate a pass. Literal patterns and patterns whose only
    metacharacter is ``*`` (nearly all real ones) are matched with plain string
    searches; the rest go through :func:`fleet.core.globs.glob_match`."""

    __slots__ = ("_general", "_literals", "_stars", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        literals: set[str] = set()
        stars: list[tuple[str, ...]] = []
        general: list[str] = []
        for p in self.patterns:
            if not _SPECIAL.search(p):
                literals.add(p)
            elif not _SPECIAL_BUT_STAR.search(p):
                stars.append(tuple(p.split("*")))
            else:
                general.append(p)
        self._literals = frozenset(literals)
        self._stars = tuple(stars)
        self._general = tuple(general)

    @property
    def is_literal(self) -> bool:
        """True when every pattern is a plain name (no metacharacters)."""
        return (
            not self._stars and not self._general and len(self._literals) == len(set(self.patterns))
        )

    def matches(self, name: str) -> bool:
        if name in self._literals:
            return True
        if "/" in name:
            # ``*`` never matches "/": leave such (invalid unit) names to the exact path.
            if any(glob_match("*".join(parts), name) for parts in self._stars):
                return True
        elif any(_star_match(parts, name) for parts in self._stars):
            return True
        return any(glob_match(p, name) for p in self._general)

    def first(self, name: str) -> str | None:
        """The first pattern (in the unit's order) that matches ``name``."""
        if not self.matches(name):
            return None
        return next(p for p in self.patterns if glob_match(p, name))


_SPECIAL = re.compile(r"[*?\\[]")
_SPECIAL_BUT_STAR = re.compile(r"[?\\[]")


def _star_match(parts: tuple[str, ...], name: str) -> bool:
    """Match ``name`` against a pattern split on ``*`` (no ``/`` in ``name``)."""
    first, last = parts[0], parts[-1]
    if len(name) < len(first) + len(last) or not name.startswith(first):
        return False
    if not name.endswith(last):
        return False
    # Leftmost matching of the middle pieces is optimal for ``*``-only patterns.
    pos, end = len(first), len(name) - len(last)
    for piece in parts[1:-1]:
        found = name.find(piece, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


@lru_cache(maxsize=65536)
def glob_set(patterns: tuple[str, ...]) -> GlobSet:
    """A cached :class:`GlobSet` for ``patterns``."""
    return GlobSet(patterns)


# ---------------------------------------------------------------------------------------------
# Metadata


@dataclass(frozen=True, slots=True)
class _Grouped:
    equal: tuple[tuple[str, tuple[str, ...]], ...]  # key -> accepted values, first-seen order
    others: tuple[MetadataConstraint, ...]


@lru_cache(maxsize=4096)
def _group(constraints: tuple[MetadataConstraint, ...]) -> _Grouped:
    equal: dict[str, list[str]] = {}
    others: list[MetadataConstraint] = []
    for c in constraints:
        if c.op is MetadataOp.EQ:
            values = equal.setdefault(c.key, [])
            if c.value not in values:
                values.append(c.value)
        else:
            others.append(c)
    return _Grouped(tuple((k, tuple(v)) for k, v in equal.items()), tuple(others))


def metadata_matches(
    constraints: Sequence[MetadataConstraint], metadata: Mapping[str, str]
) -> bool:
    """True when ``metadata`` satisfies every constraint group (see the module docstring)."""
    if not constraints:
        return True
    grouped = _group(tuple(constraints))
    for key, values in grouped.equal:
        if metadata.get(key) not in values:
            return False
    return all(_term_holds(c, metadata) for c in grouped.others)


def unmet_metadata(
    constraints: Sequence[MetadataConstraint], metadata: Mapping[str, str]
) -> list[str]:
    """One human-readable line per unmet group, e.g. ``region=us-east-1 or us-west-1
    (machine has region=eu-west-1)``; empty when everything holds."""
    if not constraints:
        return []
    grouped = _group(tuple(constraints))
    unmet: list[str] = []
    for key, values in grouped.equal:
        if metadata.get(key) not in values:
            wanted = f"{key}={' or '.join(values)}"
            unmet.append(f"{wanted} ({_has(key, metadata)})")
    for c in grouped.others:
        if not _term_holds(c, metadata):
            have = _has(c.key, metadata)
            comparable = c.op is MetadataOp.NE or c.key not in metadata
            if not comparable and _compare(metadata[c.key], c.value) is None:
                have += ": not comparable as numbers or versions"
            unmet.append(f"{c} ({have})")
    return unmet


def _has(key: str, metadata: Mapping[str, str]) -> str:
    if key in metadata:
        return f"machine has {key}={metadata[key]}"
    return f"machine has no {key}"


def _term_holds(c: MetadataConstraint, metadata: Mapping[str, str]) -> bool:
    have = metadata.get(c.key)
    if c.op is MetadataOp.NE:
        return have != c.value
    if have is None:
        return False
    if c.op is MetadataOp.EQ:
        return have == c.value
    cmp = _compare(have, c.value)
    if cmp is None:
        return False
    if c.op is MetadataOp.LT:
        return cmp < 0
    if c.op is MetadataOp.LE:
        return cmp <= 0
    if c.op is MetadataOp.GT:
        return cmp > 0
    return cmp >= 0  # MetadataOp.GE


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_VERSION = re.compile(r"[vV]?(\d+(?:\.\d+)*)")


@lru_cache(maxsize=4096)
def _compare(have: str, want: str) -> int | None:
    """-1/0/1 ordering of ``have`` against ``want``, or None when they are not comparable."""
    if _NUMBER.fullmatch(have) and _NUMBER.fullmatch(want):
        a, b = Decimal(have), Decimal(want)
        return (a > b) - (a < b)
    va, vb = _VERSION.fullmatch(have), _VERSION.fullmatch(want)
    if va and vb:
        pa = [int(p) for p in va.group(1).split(".")]
        pb = [int(p) for p in vb.group(1).split(".")]
        width = max(len(pa), len(pb))
        ta = tuple(pa + [0] * (width - len(pa)))
        tb = tuple(pb + [0] * (width - len(pb)))
        return (ta > tb) - (ta < tb)
    return None
