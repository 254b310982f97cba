"""fleet.core.limits: the unit size rule, one row per boundary and kind of content."""

from __future__ import annotations

import pytest

from fleet.core.limits import MAX_UNIT_BYTES, check_unit_size
from fleet.core.unitfile import UnitFile
from fleet.errors import InvalidInput, TooLarge
from tests.unitsizes import ASCII, CONTROL, EMOJI, unit_of_size

LIMIT = "the limit is 131072 bytes (128 KiB)"


def test_the_limit_is_128_kib() -> None:
    assert MAX_UNIT_BYTES == 128 * 1024 == 131072


@pytest.mark.parametrize(
    ("size", "char", "refused"),
    [
        pytest.param(100, ASCII, False, id="small"),
        pytest.param(MAX_UNIT_BYTES - 1, ASCII, False, id="one-under"),
        pytest.param(MAX_UNIT_BYTES, ASCII, False, id="at-limit"),
        pytest.param(MAX_UNIT_BYTES + 1, ASCII, True, id="one-over"),
        pytest.param(2_000_000, ASCII, True, id="2-MB"),
        pytest.param(MAX_UNIT_BYTES, CONTROL, False, id="at-limit-control-characters"),
        pytest.param(MAX_UNIT_BYTES + 1, CONTROL, True, id="one-over-control-characters"),
        pytest.param(MAX_UNIT_BYTES, EMOJI, False, id="at-limit-4-byte-characters"),
        pytest.param(MAX_UNIT_BYTES + 1, EMOJI, True, id="one-over-4-byte-characters"),
    ],
)
def test_unit_size_rule(size: int, char: str, refused: bool) -> None:
    unit = unit_of_size(size, char)
    if not refused:
        check_unit_size("a.service", unit)
        return
    with pytest.raises(TooLarge) as caught:
        check_unit_size("a.service", unit)
    assert str(caught.value) == f"unit a.service is too large: {size} bytes, {LIMIT}"


def test_bytes_are_counted_not_characters() -> None:
    # Under the limit in characters, over it in UTF-8 bytes.
    unit = unit_of_size(MAX_UNIT_BYTES + 4, EMOJI)
    assert len(unit.serialize()) < MAX_UNIT_BYTES
    with pytest.raises(TooLarge):
        check_unit_size("a.service", unit)


def test_only_the_canonical_text_counts() -> None:
    # Comments, blank lines and spacing in the file as written are not stored.
    unit = unit_of_size(MAX_UNIT_BYTES)
    written = "\n# a comment\n\n".join(unit.serialize().splitlines()) + "\n"
    assert len(written.encode()) > MAX_UNIT_BYTES
    parsed = UnitFile.parse(written)
    assert parsed == unit
    assert parsed.size == MAX_UNIT_BYTES
    check_unit_size("a.service", parsed)


def test_too_large_is_bad_input() -> None:
    # Callers that refuse bad input (nothing written, exit 1) refuse this too.
    assert issubclass(TooLarge, InvalidInput)
    assert TooLarge("x").exit_code == 1
