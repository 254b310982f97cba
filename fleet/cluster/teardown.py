"""Removing machines from the host, down to the last trace.

A machine is found by every trace it can leave (a state file entry, a cgroup,
a network namespace, a directory), since a killed process or a half-failed
boot leaves some without the others. Removal powers it off cleanly first:
SIGKILL to ``systemd-nspawn`` would leave the machine's systemd running,
reparented to the host's PID 1.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from fleet.cluster.claims import bridge_of_another, release
from fleet.cluster.footprint import (
    CGROUP_GROUP,
    cgroup_roots,
    forget_runtime,
    kill_cgroups,
    link_exists,
    mounts_under,
    netns_names,
    poweroff,
    run,
    umount,
)
from fleet.cluster.host import check_host
from fleet.cluster.state import DEFAULT_STATE_DIR, Layout, read_state
from fleet.errors import FleetError


def leftover_names(lay: Layout) -> list[str]:
    """Machines of this layout that exist in any form: state, cgroups, netns, dirs."""
    pattern = re.compile(rf"{re.escape(lay.prefix)}\d+")
    names: set[str] = set()
    state = None
    with contextlib.suppress(FleetError):
        state = read_state(lay.state_dir)
    if state is not None:
        names.update(n.name for n in state.nodes)
    for root in cgroup_roots():
        group = root / CGROUP_GROUP
        if group.is_dir():
            names.update(p.name for p in group.iterdir() if pattern.fullmatch(p.name))
    names.update(n for n in netns_names() if pattern.fullmatch(n))
    if lay.state_dir.is_dir():
        names.update(p.name for p in lay.state_dir.iterdir() if pattern.fullmatch(p.name))
    return sorted(names)


def remove_nodes(lay: Layout, names: Sequence[str], keep_logs: Path | None) -> None:
    pids: dict[str, int] = {}
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            pids[name] = int((lay.state_dir / name / "nspawn.pid").read_text())
    poweroff(pids, grace=20)
    for name in names:
        kill_cgroups(name, remove=True)
        d = lay.state_dir / name
        if keep_logs is not None and (d / "console.log").exists():
            keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(d / "console.log", keep_logs / f"{name}.console.log")
        for point in mounts_under(d):
            umount(point)
        run(["ip", "netns", "del", name], check=False)  # takes its veth pair along
        if link_exists(f"vh-{name}"):
            run(["ip", "link", "del", f"vh-{name}"], check=False)
        if d.exists() and not mounts_under(d):
            shutil.rmtree(d, ignore_errors=True)
        forget_runtime(name)
    for root in cgroup_roots():
        with contextlib.suppress(OSError):
            (root / CGROUP_GROUP).rmdir()  # fails while another cluster uses it: fine


def teardown(
    state_dir: Path = DEFAULT_STATE_DIR,
    prefix: str = "fleet",
    bridge: str = "fleetbr0",
    *,
    keep_logs: Path | None = None,
) -> None:
    """Remove every trace of a cluster; safe to run twice and after a half-failed boot."""
    check_host()
    state_dir = Path(state_dir)
    lay = Layout(state_dir, prefix, bridge=bridge)
    state = None
    with contextlib.suppress(FleetError):
        state = read_state(state_dir)
    if state is not None:
        lay = state.layout
    other = bridge_of_another(lay.bridge, state_dir)
    if other is not None:
        raise FleetError(
            f"bridge {lay.bridge} belongs to the live cluster in {other}: not touching it"
        )
    remove_nodes(lay, leftover_names(lay), keep_logs)
    if link_exists(lay.bridge):
        run(["ip", "link", "del", lay.bridge], check=False)
    release(state_dir)
    if state_dir.exists():
        if mounts_under(state_dir):
            raise FleetError(f"{state_dir}: mounts remain, not removing it")
        shutil.rmtree(state_dir, ignore_errors=True)
