"""The shape of fleetctl's SSH package: it depends on no other fleetctl module
(the client depends on it, never the reverse), and only SSH paths load it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fleetctl" / "ssh"


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_ssh_package_imports_no_other_fleetctl_module() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert modules
    bad = [
        f"{path.name} imports {name}"
        for path in modules
        for name in _imported(path)
        if name.split(".")[0] == "fleetctl" and not name.startswith("fleetctl.ssh")
    ]
    assert bad == []


PROBE = """
import sys
import fleetctl.cli, fleetctl.context, fleetctl.drivers.api, fleetctl.drivers.etcd
from fleetctl.client import ClientSettings
ClientSettings()
print(",".join(m for m in ("paramiko", "fleetctl.ssh") if m in sys.modules))
"""


def test_commands_without_ssh_do_not_load_paramiko() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.strip() == ""
