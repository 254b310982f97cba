"""The dependency rule of docs/architecture.md §2: arrows point down only.

fleet.core imports nothing but the standard library, itself and fleet.errors.
The components (engine, agent, API) see the layers below them only through
fleet.core, fleet.ports, fleet.errors, the unit and machine use cases
(fleet.units, fleet.machines), the change feed (fleet.changes) and
fleet.metrics: never the registry or systemd adapters, which the composition
root (fleet.daemon) hands them. Adapters and components never import fleetctl;
fleetctl never imports the daemon's components. Only the registry
spells an etcd key.
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


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


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
        "fleet.units",
        "fleet.metrics",
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
    "fleet.ports": ("fleet.registry", "fleet.systemd", "fleet.agent", "fleet.engine", "fleetctl"),
    "fleet.units": ("fleet.registry", "fleet.systemd", "fleet.agent", "fleet.engine", "fleetctl"),
    "fleet.machines": (
        "fleet.registry",
        "fleet.systemd",
        "fleet.agent",
        "fleet.engine",
        "fleet.api",
        "fleetctl",
    ),
    "fleet.events": (
        "fleet.registry",
        "fleet.systemd",
        "fleet.agent",
        "fleet.engine",
        "fleet.api",
        "fleetctl",
    ),
    "fleet.maintenance": (
        "fleet.registry",
        "fleet.systemd",
        "fleet.agent",
        "fleet.engine",
        "fleet.api",
        "fleetctl",
    ),
    "fleet.changes": (
        "fleet.registry",
        "fleet.systemd",
        "fleet.agent",
        "fleet.engine",
        "fleet.api",
        "fleetctl",
    ),
    "fleet.registry": ("fleet.agent", "fleet.engine", "fleet.api", "fleet.systemd", "fleetctl"),
    "fleet.systemd": ("fleet.registry", "fleet.agent", "fleet.engine", "fleet.api", "fleetctl"),
    "fleetctl": (
        "fleet.agent",
        "fleet.engine",
        "fleet.systemd",
        "fleet.daemon",
        "fleet.api.app",
        "fleet.api.server",
    ),
}

# What a component may import from fleet, besides its own package.
COMPONENT_ALLOWED = (
    "fleet.core",
    "fleet.ports",
    "fleet.errors",
    "fleet.units",
    "fleet.machines",
    "fleet.maintenance",
    "fleet.events",
    "fleet.changes",
    "fleet.metrics",
)
COMPONENTS = ("fleet.engine", "fleet.agent", "fleet.api")
# The adapters' libraries: a component that imports one has bypassed a port.
ADAPTER_LIBRARIES = ("aetcd", "grpc", "dbus_fast", "paramiko")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_point_down(package: str) -> None:
    modules = _modules(package) or [ROOT / (package.replace(".", "/") + ".py")]
    assert all(m.exists() for m in modules), f"no modules found for {package}"
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in _imports(path)
        if _within(name, FORBIDDEN[package])
    ]
    assert bad == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_see_below_only_core_ports_and_errors(component: str) -> None:
    modules = _modules(component)
    assert modules, f"no modules found for {component}"
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in _imports(path)
        if name.startswith("fleet.") and not _within(name, (*COMPONENT_ALLOWED, component))
    ]
    assert bad == []


# How the registry's keys begin (fleet/registry/keys.py); nothing else may spell one.
KEY_PREFIXES = (
    "unit/",
    "job/",
    "global/",
    "schedule/",
    "reason/",
    "machine/",
    "machine-metadata/",
    "state/",
    "engine/",
)


def _spelled_keys(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    # Every literal part counts, f-string parts included: f"{p}schedule/{m}/" spells a key.
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(KEY_PREFIXES)
        ):
            found.append(f"{path.name}:{node.lineno}: {node.value[:40]!r}")
    return found


# fleet's discovery document names REST paths ("state/{unitName}"), not keys.
NOT_KEYS = (ROOT / "fleet" / "api" / "discovery.py",)


def test_only_the_registry_spells_etcd_keys() -> None:
    modules = [
        path
        for package in ("fleet", "fleetctl")
        for path in _modules(package)
        if not path.is_relative_to(ROOT / "fleet" / "registry") and path not in NOT_KEYS
    ]
    assert modules
    assert [hit for path in modules for hit in _spelled_keys(path)] == []


def test_the_key_check_sees_keys_in_f_strings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('a = f"schedule/{m}/"\nb = f"{p}machine-metadata/{m}"\nc = "units/"\n')
    assert _spelled_keys(sample) == ["sample.py:1: 'schedule/'", "sample.py:2: 'machine-metadata/'"]
