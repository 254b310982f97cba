"""The dependency rule of docs/architecture.md §2: arrows point down only.

fleet.core imports nothing but the standard library, itself and fleet.errors;
adapters and components never import fleetctl; fleetctl never imports the
daemon's components (agent, engine, api server, systemd). The unit use cases
(fleet.units) sit on the ports alone, and the API reaches the registry only
through them and the ports.
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
    "fleet.agent": ("fleet.engine", "fleet.api", "fleetctl"),
    "fleet.api": ("fleet.agent", "fleet.engine", "fleet.registry", "fleet.systemd", "fleetctl"),
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


def _project_imports(path: Path) -> set[str]:
    """Imported project names, ``from a import b`` counted as ``a.b`` (b may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("fleet", "fleetctl")}


# Everything of the project a package may import (its own modules included).
ALLOWED = {
    "fleet/units.py": ("fleet.core", "fleet.ports", "fleet.errors"),
    "fleet/api": (
        "fleet.api",
        "fleet.core",
        "fleet.ports",
        "fleet.errors",
        "fleet.units",
        "fleet.metrics",
    ),
}


@pytest.mark.parametrize("where", sorted(ALLOWED))
def test_only_allowed_project_imports(where: str) -> None:
    target = ROOT / where
    modules = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert modules, f"no modules found for {where}"
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in sorted(_project_imports(path))
        if not any(name == a or name.startswith(a + ".") for a in ALLOWED[where])
    ]
    assert bad == []
