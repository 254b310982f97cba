"""The tabwriter rule, checked against layouts Go's text/tabwriter produces
with fleet's settings (minwidth 0, tabwidth 8, padding 1, padchar '\\t')."""

from __future__ import annotations

import pytest

from fleetctl.tabwriter import tabulate

CASES = [
    pytest.param([], "", id="no-rows"),
    pytest.param([["only"]], "only\n", id="one-cell-not-padded"),
    pytest.param(
        [
            ["UNIT", "HASH", "DSTATE", "STATE", "TARGET"],
            ["hello.service", "8a62c40", "inactive", "inactive", "-"],
        ],
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\nhello.service\t8a62c40\tinactive\tinactive\t-\n",
        id="list-unit-files-default",
    ),
    pytest.param([["1234567", "x"]], "1234567\tx\n", id="width-7-plus-padding-is-one-tab"),
    pytest.param([["12345678", "x"]], "12345678\tx\n", id="width-8-rounds-up-to-16"),
    pytest.param(
        [["12345678", "x"], ["a", "y"]],
        "12345678\tx\na\t\ty\n",
        id="short-cell-in-wide-column-gets-two-tabs",
    ),
    pytest.param([["", "x"], ["", "y"]], "\tx\n\ty\n", id="empty-column-is-one-tab-stop"),
    pytest.param(
        [["a" * 17, "b"], ["c", "d"]],
        "a" * 17 + "\tb\nc\t\t\td\n",
        id="width-18-rounds-to-24",
    ),
    pytest.param(
        [["MACHINE", "IP", "METADATA"], ["113f16a7...", "172.17.8.103", "az=us-east-1"]],
        "MACHINE\t\tIP\t\tMETADATA\n113f16a7...\t172.17.8.103\taz=us-east-1\n",
        id="list-machines",
    ),
    pytest.param(
        [["a", "b", "c"], ["dddddddddd", "e"]],
        "a\t\tb\tc\ndddddddddd\te\n",
        id="ragged-last-cell-does-not-widen-column",
    ),
]


@pytest.mark.parametrize(("rows", "expected"), CASES)
def test_tabulate(rows: list[list[str]], expected: str) -> None:
    assert tabulate(rows) == expected


@pytest.mark.parametrize("width", range(30))
def test_every_cell_ends_on_the_same_tab_stop(width: int) -> None:
    rows = [["x" * width, "end"], ["y", "end"]]
    first, second = tabulate(rows).splitlines()

    def stop(line: str) -> int:
        column = 0
        for char in line[: line.index("end")]:
            column = (column // 8 + 1) * 8 if char == "\t" else column + 1
        return column

    assert stop(first) == stop(second)
    assert stop(first) >= width + 1
    assert stop(first) % 8 == 0
