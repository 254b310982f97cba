"""The examples in the project's documentation, read the way the tests check them.

:func:`examples` finds every command line of the fenced blocks of README.md,
CONTRIBUTING.md and docs/*.md (with the output a ``console`` block shows after
it); :func:`inline_commands` the ``fleetctl ...``/``fleet-cluster ...`` code
spans of the prose; :func:`table_rows` the cells of every table. The checks
live in tests/test_docs.py (every command, flag and path exists) and
tests/functional/test_wheel.py (the README's and docs/local-cluster.md's
console blocks run against a cluster installed from the wheel).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC_FILES = (
    REPO / "README.md",
    REPO / "CONTRIBUTING.md",
    *sorted((REPO / "docs").glob("*.md")),
)

_FENCE = re.compile(r"^\s*```\s*([\w-]*)\s*$")
_PROMPT = re.compile(r"^[$#] ")
_SPAN = re.compile(r"``(.+?)``|`([^`]+)`")
# The synopsis of a program (``fleetctl [GLOBAL OPTIONS] COMMAND ...``) is grammar, not a command.
_SYNOPSIS = re.compile(r"\[[A-Z]")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    lines: tuple[str, ...]


@dataclass
class Example:
    """One command line of a fenced block."""

    where: str  # "docs/cli.md:42"
    block: Block
    text: str  # the command as typed: prompt and trailing comment removed
    words: list[str]
    prompted: bool
    output: list[str] = field(default_factory=list)

    @property
    def synopsis(self) -> bool:
        return bool(_SYNOPSIS.search(self.text))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def fenced_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = _FENCE.match(line)
        if opened is None and fence:
            opened, body = (number, fence.group(1)), []
        elif opened is not None and line.strip() == "```":
            blocks.append(Block(path, opened[0], opened[1], tuple(body)))
            opened = None
        elif opened is not None:
            body.append(line)
    return blocks


def strip_comment(line: str) -> str:
    """The line without a shell comment (a ``#`` after blank space, outside quotes)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def program(words: list[str]) -> str | None:
    """Which known program a command line runs, or None for anything else."""
    if not words:
        return None
    name = Path(words[0]).name
    if name in ("fleetctl", "fleet-cluster", "pytest"):
        return name
    if name.startswith("python") and words[1:3] == ["-m", "fleet.cluster"]:
        return "fleet-cluster"
    if name.startswith("python") and len(words) > 1 and words[1].endswith(".py"):
        return "python-script"
    if name == "bash" and len(words) > 1 and words[1].endswith(".sh"):
        return "bash-script"
    if name == "eval" and len(words) == 2 and words[1].startswith("$(") and words[1][-1] == ")":
        return "eval"
    return None


def command_args(words: list[str]) -> list[str]:
    """The arguments after the program (``python -m fleet.cluster`` counts as one)."""
    if Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "fleet.cluster"]:
        return words[3:]
    return words[1:]


def eval_inner(words: list[str]) -> list[str]:
    """``eval "$(fleet-cluster env)"`` -> ``["fleet-cluster", "env"]``."""
    return shlex.split(words[1][2:-1])


def examples(path: Path) -> list[Example]:
    """Every command line of ``path``'s fenced blocks, in order.

    A line is a command when, after an optional ``$ ``/``# `` prompt, it runs a
    program :func:`program` knows. In a ``console`` block any other prompted
    line is a command too (with ``words`` that :func:`program` does not know,
    so a checker reports it); unprompted lines after a prompted command are
    its output.
    """
    found: list[Example] = []
    for block in fenced_blocks(path):
        current: Example | None = None
        for offset, line in enumerate(block.lines, 1):
            prompt = _PROMPT.match(line)
            text = strip_comment(line[prompt.end() :] if prompt else line)
            try:
                words = shlex.split(text)
            except ValueError:
                words = []
            known = program(words) is not None
            if known or (prompt and block.lang == "console"):
                current = Example(
                    f"{rel(path)}:{block.line + offset}", block, text, words, bool(prompt)
                )
                found.append(current)
            elif current is not None and current.prompted and line.strip():
                current.output.append(line)
    return found


def all_examples() -> list[Example]:
    return [e for path in DOC_FILES for e in examples(path)]


def console_block(path: Path, first_command: str) -> list[Example]:
    """The commands of the ``console`` block of ``path`` that starts with ``first_command``."""
    for block in fenced_blocks(path):
        if block.lang != "console":
            continue
        commands = [e for e in examples(path) if e.block == block]
        if commands and commands[0].words[: len(first_command.split())] == first_command.split():
            return commands
    raise LookupError(f"{rel(path)}: no console block starting with {first_command!r}")


def _prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    inside = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if _FENCE.match(line) or (inside and line.strip() == "```"):
            inside = not inside
            continue
        if not inside:
            yield number, line


def spans(text: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in _SPAN.finditer(text)]


_INLINE_COMMAND = re.compile(
    r"^(?:\.venv/bin/)?(?:fleetctl|fleet-cluster)(?: |$)|^python -m fleet\.cluster(?: |$)"
)


@dataclass(frozen=True)
class InlineCommand:
    where: str
    text: str
    line: str  # the whole line of prose (a table row is one line)


def inline_commands(path: Path) -> list[InlineCommand]:
    """Code spans of the prose that start with ``fleetctl``, ``fleet-cluster`` or
    ``python -m fleet.cluster`` followed by a space (``fleetctl/cli.py`` is a path)."""
    return [
        InlineCommand(f"{rel(path)}:{number}", text, line)
        for number, line in _prose_lines(path)
        for text in spans(line)
        if _INLINE_COMMAND.match(text) and text.strip() not in ("fleetctl", "fleet-cluster")
    ]


def split_cells(row: str) -> list[str]:
    """A markdown table row's cells; a ``|`` inside a code span is no separator."""
    cells: list[str] = []
    current: list[str] = []
    in_code = False
    for char in row.strip().removeprefix("|").removesuffix("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    cells.append("".join(current).strip())
    return cells


@dataclass(frozen=True)
class TableRow:
    where: str
    header: list[str]
    cells: list[str]


def table_rows(path: Path) -> list[TableRow]:
    """Every body row of every table (header and ``|---|`` rule left out)."""
    rows: list[TableRow] = []
    header: list[str] | None = None
    rule_seen = False
    for number, line in _prose_lines(path):
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = split_cells(line)
        if header is None:
            header, rule_seen = cells, False
        elif not rule_seen and all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            rule_seen = True
        else:
            rows.append(TableRow(f"{rel(path)}:{number}", header, cells))
    return rows
