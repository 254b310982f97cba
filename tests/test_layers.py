"""The dependency rule of docs/architecture.md §2: arrows point down only.

fleet.core imports nothing but the standard library, itself and fleet.errors;
adapters and components never import fleetctl; fleetctl never imports the
daemon's components (agent, engine, api server, systemd).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


FORBIDDEN = {
    "fleet.core": (
        "fleet.registry",
        "fleet.agent",
        "fleet.engine",
        "fleet.api",
        "fleet.systemd",
        "fleet.daemon",
        "fleet.cluster",
        "fleet.ports",
        "fleetctl",
        "aetcd",
        "grpc",
        "dbus_fast",
        "paramiko",
        "httpx",
        "click",
        "rich",
        "fastapi",
    ),
    "fleet.registry": ("fleet.agent", "fleet.engine", "fleet.api", "fleet.systemd", "fleetctl"),
    "fleet.systemd": ("fleet.registry", "fleet.agent", "fleet.engine", "fleet.api", "fleetctl"),
    "fleet.engine": ("fleet.agent", "fleet.api", "fleet.systemd", "fleetctl"),
    # The agent sees its adapters only through fleet.ports (the daemon wires them).
    "fleet.agent": (
        "fleet.engine",
        "fleet.api",
        "fleet.registry",
        "fleet.systemd",
        "fleet.cluster",
        "fleet.daemon",
        "fleet.metrics",
        "fleetctl",
        "aetcd",
        "grpc",
        "dbus_fast",
    ),
    "fleet.api": ("fleet.agent", "fleet.engine", "fleet.systemd", "fleetctl"),
    "fleetctl": (
        "fleet.agent",
        "fleet.engine",
        "fleet.systemd",
        "fleet.daemon",
        "fleet.api.app",
        "fleet.api.server",
    ),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_point_down(package: str) -> None:
    modules = _modules(package)
    assert modules, f"no modules found for {package}"
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package])
    ]
    assert bad == []


def test_only_tests_and_benchmarks_use_the_in_memory_systemd() -> None:
    """fleet.systemd.memory is a test double: no shipped module may import it."""
    shipped = [*_modules("fleet"), *_modules("fleetctl")]
    bad = [
        str(path.relative_to(ROOT))
        for path in shipped
        if path != ROOT / "fleet/systemd/memory.py" and "fleet.systemd.memory" in _imports(path)
    ]
    assert bad == []
