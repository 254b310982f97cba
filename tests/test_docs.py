"""The documentation's examples name commands, flags and files that exist.

What "where practical" means here (README.md, CONTRIBUTING.md, docs/*.md):

* Every command line of a fenced block (a ``console`` block's ``$ ``/``# ``
  prompts, or a line of any other block that starts with a known program) is
  checked without running it:

  - ``fleetctl ...``, ``fleet-cluster ...``, ``python -m fleet.cluster ...``
    (and ``eval "$(...)"`` around them): parsed by the real click command
    with every callback replaced by a no-op, so an unknown command, an unknown
    flag, a bad flag value or a missing argument fails exactly as it would for
    a user, while nothing touches a cluster;
  - ``.venv/bin/pytest PATH...``: every path (and ``--ignore`` path) exists;
  - ``.venv/bin/python bench/X.py --flag ...``: the script exists and its
    ``--help`` lists every flag;
  - ``bash scripts/X.sh``: the script exists;
  - a prompted line of a ``console`` block that runs anything else fails: the
    test has to be taught about it.

  Synopsis lines (``fleetctl [GLOBAL OPTIONS] COMMAND ...``) are grammar and
  are skipped; block diagrams (box-drawing characters) are not commands.
* Every ``fleetctl ...``/``fleet-cluster ...``/``python -m fleet.cluster ...``
  code span of the prose: the commands it names exist (fleetctl's prefix rule
  applies; ``a/b/c`` names three) and every ``--flag`` in it is a flag of that
  command or of the program. These are fragments (``fleetctl version <v>``,
  ``fleetctl --ca-file --cert-file --key-file``), so they are not parsed
  whole. ``fleetctl list`` is documented as the ambiguous prefix: it must be
  ambiguous. Rows of a table whose status is ``planned`` (docs/features.md)
  describe what does not exist yet and are skipped.
* Tables: in docs/cli.md (fleetctl) and docs/local-cluster.md
  (fleet-cluster), a row whose first cell names a command or a global flag
  documents that command or flag: it must exist, and every flag the row
  mentions must be one of that command's or a global one (a flag named in the
  first cell, like ``--sign`` beside ``verify``, must exist on some command).
  The README's table of pieces lists fleetctl's and fleet-cluster's commands
  and flags: each must exist. "Options of `up`" paragraphs: each flag exists.

Running the examples is tests/functional/test_wheel.py's part: the README's and
docs/local-cluster.md's console blocks run there against a cluster installed
from the wheel; the other blocks need a whole benchmark or test run, or are
the demo itself (scripts/demo.sh).
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import click
import pytest

from fleet.cluster.cli import cli as fleet_cluster_cli
from fleetctl.cli import cli as fleetctl_cli
from tests.docexamples import (
    DOC_FILES,
    REPO,
    Example,
    InlineCommand,
    TableRow,
    all_examples,
    command_args,
    eval_inner,
    inline_commands,
    program,
    rel,
    spans,
    table_rows,
)

GROUPS: dict[str, click.Group] = {"fleetctl": fleetctl_cli, "fleet-cluster": fleet_cluster_cli}
# What a doc's tables document.
TABLE_PROGRAMS = {"docs/cli.md": "fleetctl", "docs/local-cluster.md": "fleet-cluster"}
# Spans the docs show failing on purpose, and the words of the failure.
DOCUMENTED_FAILURES = {"fleetctl list": "ambiguous"}
_FLAG = re.compile(r"^--?[A-Za-z][\w-]*")
_DIAGRAM = re.compile("[\u2500-\u257f\u25b2\u25ba\u25bc]")


# ------------------------------------------------------------------ click, without running


def dry_parse(name: str, args: list[str]) -> None:
    """Parse ``args`` as program ``name`` would, every callback a no-op.

    Raises click's UsageError (or BadParameter, MissingParameter...) as the
    real program would; ``--help``/``--version`` print and return.
    """
    group = GROUPS[name]
    commands: list[click.Command] = [group]
    for command in commands:  # grows: subcommands of nested groups (fleet-cluster etcd)
        if isinstance(command, click.Group):
            commands.extend(command.commands.values())
    with contextlib.ExitStack() as stack:
        for command in commands:
            stack.enter_context(mock.patch.object(command, "callback", mock.Mock(return_value=0)))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        group.main(args=list(args), prog_name=name, standalone_mode=False)


def _context(name: str) -> click.Context:
    return click.Context(GROUPS[name], info_name=name)


def flags_of(command: click.Command, ctx: click.Context) -> dict[str, click.Parameter]:
    return {
        opt: param
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    }


def resolve(name: str, word: str, *, exact: bool = False) -> click.Command:
    """The command ``word`` names (fleetctl: any unambiguous prefix). Raises UsageError."""
    group = GROUPS[name]
    ctx = _context(name)
    command = group.commands.get(word) if exact else group.get_command(ctx, word)
    if command is None:
        raise click.UsageError(f"no such command {word!r}")
    return command


def any_flag(name: str) -> set[str]:
    ctx = _context(name)
    group = GROUPS[name]
    found = set(flags_of(group, ctx))
    for command in group.commands.values():
        found |= set(flags_of(command, ctx))
    return found


def flag_names(text: str) -> list[str]:
    """``--lines=10`` -> ``--lines``; ``-o/--output`` -> both; ``--a/--b/--c`` -> three."""
    first = text.split(maxsplit=1)[0]
    return [part.split("=")[0] for part in first.split("/") if _FLAG.match(part)]


# ------------------------------------------------------------------ fenced blocks


def _check_example(example: Example, words: list[str]) -> str | None:
    """What is wrong with one command line, or None."""
    kind = program(words)
    if kind in GROUPS:
        try:
            dry_parse(kind, command_args(words))
        except click.ClickException as exc:
            return f"{exc.format_message()}"
        return None
    if kind == "eval":
        inner = eval_inner(words)
        if program(inner) not in GROUPS:
            return f"eval of an unknown program: {inner}"
        return _check_example(example, inner)
    if kind == "pytest":
        args = command_args(words)
        paths = [a for a in args if not a.startswith("-")]
        missing = [p for p in paths if not (REPO / p.split("::")[0]).exists()]
        return f"no such test path(s): {missing}" if missing else None
    if kind == "python-script":
        script, *args = command_args(words)
        if not (REPO / script).is_file():
            return f"no such script: {script}"
        flags = sorted({a.split("=")[0] for a in args if a.startswith("-")})
        if not flags:
            return None
        proc = subprocess.run(
            [sys.executable, script, "--help"],
            cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            return f"{script} --help exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        unknown = [f for f in flags if not re.search(rf"{re.escape(f)}\b", proc.stdout)]
        return f"{script} has no flag(s) {unknown}" if unknown else None
    if kind == "bash-script":
        script = command_args(words)[0]
        return None if (REPO / script).is_file() else f"no such script: {script}"
    return f"a console example this test does not know how to check: {example.text!r}"


def _block_examples() -> list[Example]:
    return [
        e
        for e in all_examples()
        if not e.synopsis and not any(_DIAGRAM.search(line) for line in e.block.lines)
    ]


def test_fenced_command_lines_parse() -> None:
    found = _block_examples()
    kinds = {program(e.words) for e in found}
    # The checker sees what the docs hold (a broken extractor would check nothing).
    assert {"fleetctl", "fleet-cluster", "eval", "pytest", "python-script"} <= kinds, kinds
    assert len(found) >= 20, [e.where for e in found]
    problems = [f"{e.where}: {e.text}: {p}" for e in found if (p := _check_example(e, e.words))]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ prose code spans


def _inline_problems(inline: InlineCommand) -> list[str]:
    words = inline.text.split()
    kind = program(words)
    assert kind in GROUPS, inline
    args = command_args(words)
    ctx = _context(kind)
    group_flags = flags_of(GROUPS[kind], ctx)
    problems: list[str] = []
    index = 0
    while index < len(args) and args[index].startswith("-"):  # flags before the command
        for flag in flag_names(args[index]):
            if flag not in group_flags:
                problems.append(f"{kind} has no global flag {flag}")
        param = group_flags.get(args[index].split("=")[0])
        takes_value = isinstance(param, click.Option) and not param.is_flag
        nxt = args[index + 1] if index + 1 < len(args) else "-"
        index += 2 if takes_value and "=" not in args[index] and not nxt.startswith("-") else 1
    if index >= len(args) or args[index] == "...":
        return problems
    commands: list[click.Command] = []
    for word in args[index].split("/"):
        if word.startswith("-"):
            missing = [f for f in flag_names(word) if f not in group_flags]
            problems += [f"{kind} has no global flag {f}" for f in missing]
            continue
        try:
            commands.append(resolve(kind, word))
        except click.UsageError as exc:
            problems.append(f"{kind} {word}: {exc.format_message()}")
    known = set(group_flags)
    for command in commands:
        known |= set(flags_of(command, ctx))
    for arg in args[index + 1 :]:
        if arg == "--":
            break
        problems += [f"no flag {flag} here" for flag in flag_names(arg) if flag not in known]
    return problems


def _inline_spans() -> list[InlineCommand]:
    return [
        i
        for path in DOC_FILES
        for i in inline_commands(path)
        if "| planned |" not in i.line and i.text not in DOCUMENTED_FAILURES
    ]


def test_inline_commands_name_existing_commands_and_flags() -> None:
    found = _inline_spans()
    assert len(found) >= 20, [i.where for i in found]
    problems = [f"{i.where}: `{i.text}`: {p}" for i in found for p in _inline_problems(i)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("text", "words"), sorted(DOCUMENTED_FAILURES.items()))
def test_documented_failures_fail_as_documented(text: str, words: str) -> None:
    assert any(i.text == text for path in DOC_FILES for i in inline_commands(path)), text
    name, *args = text.split()
    with pytest.raises(click.UsageError, match=words):
        dry_parse(name, args)


# ------------------------------------------------------------------ tables and option lists


def _row_problems(name: str, row: TableRow) -> list[str] | None:
    """None for a row that is about no command or flag (exit codes, fields, ...).
    In a table whose first column is "command", every row must name one."""
    where, cells = row.where, row.cells
    first = spans(cells[0])
    about_commands = row.header[0].lower() == "command"
    if not first:
        return [f"{where}: names no command"] if about_commands else None
    head = first[0].split()[0]
    ctx = _context(name)
    group_flags = set(flags_of(GROUPS[name], ctx))
    if head.startswith("-"):
        allowed = group_flags
    else:
        try:
            command = resolve(name, head, exact=True)
        except click.UsageError:
            return [f"{where}: {name} has no command {head!r}"] if about_commands else None
        allowed = group_flags | set(flags_of(command, ctx))
    everywhere = any_flag(name)
    problems = [
        f"{where}: {name} has no {flag}"
        for span in first
        for flag in flag_names(span)
        if flag not in (allowed if head.startswith("-") else everywhere)
    ]
    problems += [
        f"{where}: `{span}`: not a flag of {name} {head}"
        for cell in cells[1:]
        for span in spans(cell)
        for flag in flag_names(span)
        if flag not in allowed
    ]
    return problems


def _pieces_problems(name: str, where: str, cells: list[str]) -> Iterator[str]:
    """The README's table: a program's row lists its commands and flags."""
    group_flags = set(flags_of(GROUPS[name], _context(name)))
    for cell in cells[1:]:
        for span in spans(cell):
            if span.startswith("-"):
                for flag in flag_names(span):
                    if flag not in group_flags:
                        yield f"{where}: {name} has no global flag {flag}"
                continue
            for word in re.split(r"[\s/]+", span):
                if word and word not in GROUPS[name].commands:
                    yield f"{where}: {name} has no command {word!r}"


def test_tables_name_existing_commands_and_flags() -> None:
    problems: list[str] = []
    checked = 0
    for path in DOC_FILES:
        name = TABLE_PROGRAMS.get(rel(path))
        for row in table_rows(path):
            found = _row_problems(name, row) if name is not None else None
            if found is not None:
                problems += found
                checked += 1
            first = spans(row.cells[0])
            if rel(path) == "README.md" and first and first[0] in GROUPS:
                problems += _pieces_problems(first[0], row.where, row.cells)
                checked += 1
    assert checked >= 30
    assert not problems, "\n".join(problems)


def test_options_paragraphs_name_existing_flags() -> None:
    """docs/local-cluster.md: "Options of `up`: `--metadata ...`, ..." and the
    paragraph it starts (``--state-dir`` is fleet-cluster's own)."""
    path = REPO / "docs/local-cluster.md"
    paragraphs = path.read_text().split("\n\n")
    found = [p for p in paragraphs if re.match(r"Options of `[\w-]+`", p)]
    assert found
    problems = []
    for paragraph in found:
        command = re.match(r"Options of `([\w-]+)`", paragraph)
        assert command is not None
        ctx = _context("fleet-cluster")
        allowed = set(flags_of(GROUPS["fleet-cluster"], ctx))
        allowed |= set(flags_of(resolve("fleet-cluster", command.group(1), exact=True), ctx))
        flags = [f for span in spans(paragraph) for f in flag_names(span)]
        assert len(flags) >= 8, flags
        problems += [f"`{command.group(1)}` has no {f}" for f in flags if f not in allowed]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize(
    "line",
    [
        "fleetctl start --no-such-flag hello.service",
        "fleetctl frobnicate",
        "fleetctl --driver=carrier-pigeon list-units",
        "fleet-cluster up --machines none",
        "fleet-cluster exec",
        'eval "$(fleet-cluster envv)"',
        ".venv/bin/pytest tests/no_such_tier",
        ".venv/bin/python bench/fleetctl_latency.py --no-such-flag 3",
        "bash scripts/no-such.sh",
    ],
)
def test_the_checker_catches_a_wrong_example(line: str, tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"```console\n# {line}\n```\n")
    with mock.patch("tests.docexamples.REPO", tmp_path):
        from tests.docexamples import examples

        (example,) = examples(doc)
    assert _check_example(example, example.words) is not None


@pytest.mark.parametrize(
    "text",
    [
        "fleetctl teleport MACHINE",
        "fleetctl start --max-paralel N",
        "fleetctl ssh/status/nope",
        "fleet-cluster --state-dirr DIR status",
    ],
)
def test_the_checker_catches_a_wrong_span(text: str) -> None:
    assert _inline_problems(InlineCommand("x.md:1", text, f"`{text}`"))
