"""Unit files of an exact canonical size, for the tests of fleet's size limits.

``unit_of_size(n, char)`` is a ``[Service]`` unit whose canonical text is
exactly ``n`` bytes, its values made of ``char`` (padded with ``x`` where a
multi-byte character does not fit), each line within systemd's LINE_MAX.
``options_json`` is its ``options`` list as the API takes it.
"""

from __future__ import annotations

from typing import Any

from fleet.core.unitfile import LINE_MAX, UnitFile, UnitOption

HEADER = "[Service]\n"
NAME = "Environment"
# "Environment=" + value + "\n": the shortest line has an empty value.
_SHORTEST = len(NAME) + 2
_LONGEST = LINE_MAX + 1

ASCII = "x"
CONTROL = "\x01"  # JSON-escaped as \u0001: the registry's worst case (six bytes for one)
EMOJI = "\U0001f600"  # four bytes in UTF-8, twelve once JSON-escaped


def _line_sizes(total: int) -> list[int]:
    sizes = []
    while total > _LONGEST + _SHORTEST:
        sizes.append(_LONGEST)
        total -= _LONGEST
    if total > _LONGEST:
        sizes.append(total // 2)
        total -= total // 2
    sizes.append(total)
    return sizes


def _value(size: int, char: str) -> str:
    width = len(char.encode())
    return char * (size // width) + ASCII * (size % width)


def unit_of_size(size: int, char: str = ASCII) -> UnitFile:
    body = size - len(HEADER)
    if body < _SHORTEST:
        raise ValueError(f"a unit of {size} bytes is too small to build")
    options = [
        UnitOption("Service", NAME, _value(line - _SHORTEST, char)) for line in _line_sizes(body)
    ]
    unit = UnitFile.from_options(options)
    assert unit.size == size, (unit.size, size)
    return unit


def options_json(unit: UnitFile) -> list[dict[str, Any]]:
    return [{"section": o.section, "name": o.name, "value": o.value} for o in unit.options]
