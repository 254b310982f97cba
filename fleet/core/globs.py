"""Go ``path.Match`` globs, the syntax of fleet's ``Conflicts`` and ``Replaces``.

``*`` matches any run of characters but ``/``, ``?`` one character but ``/``,
``[...]`` a class (``^`` negates, ranges, ``\\`` escapes); a malformed pattern
matches nothing, as in fleet. Not :mod:`fnmatch`, whose classes use ``!`` and
which has no escapes. Matching never backtracks across stars, so it stays
linear in the name whatever the pattern: a unit file cannot stall validation
or the scheduler.
"""

from __future__ import annotations

import functools
import re

__all__ = ["glob_match"]


# A pattern is a sequence of chunks without stars, each optionally preceded by a
# star. Matching takes the earliest place each chunk fits after its star, as Go
# does: that is always safe for globs and keeps matching linear in the name. A
# single regex with one ``[^/]*`` per star would backtrack polynomially (degree =
# number of stars) and let a unit file stall validation and the scheduler.
_Chunks = tuple[tuple[bool, re.Pattern[str]], ...]


@functools.lru_cache(maxsize=1024)
def _compile_glob(pattern: str) -> _Chunks | None:
    """Split a Go ``path.Match`` pattern into (star, chunk regex) pairs; None if malformed."""
    chunks: list[tuple[bool, re.Pattern[str]]] = []
    star = False  # whether the chunk being built follows a star
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            if out:
                chunks.append((star, re.compile("".join(out), re.DOTALL)))
                out = []
            star = True
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "\\":
            if i + 1 >= n:
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif char == "[":
            parsed = _parse_class(pattern, i + 1)
            if parsed is None:
                return None
            regex, i = parsed
            out.append(regex)
        else:
            out.append(re.escape(char))
            i += 1
    if out or star:
        # A trailing star gives an empty last chunk: "the rest, without a '/'".
        chunks.append((star, re.compile("".join(out), re.DOTALL)))
    return tuple(chunks)


def _parse_class(pattern: str, i: int) -> tuple[str, int] | None:
    """Parse a ``[...]`` class starting after '['; (regex, index after ']') or None if malformed."""
    n = len(pattern)
    negated = i < n and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[tuple[str, str]] = []
    while True:
        if i < n and pattern[i] == "]" and ranges:
            i += 1
            break
        lo, i_next = _class_char(pattern, i)
        if lo is None:
            return None
        i = i_next
        hi = lo
        if pattern[i] == "-":
            upper, i = _class_char(pattern, i + 1)
            if upper is None:
                return None
            hi = upper
        ranges.append((lo, hi))
    # Go accepts a reversed range (it just never matches); Python's re would not.
    parts = [
        re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"
        for lo, hi in ranges
        if lo <= hi
    ]
    if not parts:
        return ("." if negated else "(?!)"), i
    return f"[{'^' if negated else ''}{''.join(parts)}]", i


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    """One (possibly escaped) character of a class, which must be followed by more pattern."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return None, i
    char = pattern[i]
    i += 1
    if i >= n:
        return None, i
    return char, i


def glob_match(pattern: str, name: str) -> bool:
    """Go ``path.Match(pattern, name)``; a malformed pattern matches nothing, as in fleet."""
    chunks = _compile_glob(pattern)
    if chunks is None:
        return False
    pos, end = 0, len(name)
    for index, (star, chunk) in enumerate(chunks):
        last = index == len(chunks) - 1
        if not star:
            found = chunk.match(name, pos)
            if found is None or (last and found.end() != end):
                return False
            pos = found.end()
            continue
        # Try the chunk after skipping 0, 1, 2... characters; a star never eats a '/'.
        start = pos
        while True:
            found = chunk.fullmatch(name, start) if last else chunk.match(name, start)
            if found is not None:
                pos = found.end()
                break
            if start >= end or name[start] == "/":
                return False
            start += 1
    return pos == end
