"""Table layout byte-for-byte like fleet's Go ``text/tabwriter`` settings.

fleet writes its lists through ``tabwriter.NewWriter(out, 0, 8, 1, '\\t', 0)``:
minwidth 0, tabwidth 8, padding 1, tab as the pad character. Scripts parse
that output, so we reproduce it exactly: every column but the last is as wide
as its widest cell plus one, rounded up to a multiple of 8, and a cell is
followed by as many tabs as it takes to reach that width (at least one). The
last cell of a line is written as is.
"""

from __future__ import annotations

from collections.abc import Sequence

TAB_WIDTH = 8
PADDING = 1


def _column_width(cells: Sequence[str]) -> int:
    widest = max(len(cell) for cell in cells) + PADDING
    return -(-widest // TAB_WIDTH) * TAB_WIDTH


def tabulate(rows: Sequence[Sequence[str]]) -> str:
    """Lay ``rows`` out as Go's tabwriter would; every line ends with ``\\n``.

    A column's width is taken over the rows that have a cell *after* it (a
    line's last cell never takes part in alignment, as in Go).
    """
    ncols = max((len(row) for row in rows), default=0)
    widths: list[int] = []
    for col in range(ncols - 1):
        cells = [row[col] for row in rows if len(row) > col + 1]
        widths.append(_column_width(cells) if cells else 0)
    lines: list[str] = []
    for row in rows:
        parts: list[str] = []
        for col, cell in enumerate(row):
            parts.append(cell)
            if col < len(row) - 1:
                parts.append("\t" * -(-(widths[col] - len(cell)) // TAB_WIDTH))
        lines.append("".join(parts) + "\n")
    return "".join(lines)
