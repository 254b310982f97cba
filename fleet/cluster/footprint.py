"""A machine's footprint on the host: the objects by which the host knows it.

One machine is, on the host, a group in every cgroup hierarchy, some mounts
under its directory, a network namespace with a veth pair, one
``systemd-nspawn`` process, a few runtime files under ``/run/systemd``. This
module finds those by the machine's name, signals them, removes them; it
decides nothing about when (booting, power operations, teardown do).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from fleet.errors import FleetError

MACHINES_DIR = Path("/run/systemd/machines")
NSPAWN_RUN = Path("/run/systemd/nspawn")
CGROUP_GROUP = "fleet-cluster"


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise FleetError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


# ---------------------------------------------------------------- cgroups


def cgroup_roots() -> list[Path]:
    """The hierarchies a machine's processes must be grouped in (hybrid or pure v2 host)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [p for p in (base / "systemd", base / "unified") if p.is_dir()]


def machine_cgroups(name: str) -> list[Path]:
    return [root / CGROUP_GROUP / name for root in cgroup_roots()]


def cgroup_pids(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    if not cgroup.is_dir():
        return pids
    for procs in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(x) for x in procs.read_text().split())
    return pids


def rmdir_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def kill_cgroups(name: str, *, remove: bool) -> None:
    """SIGKILL whatever is left in a machine's cgroups (a reparented systemd too)."""
    for cg in machine_cgroups(name):
        for _ in range(50):
            pids = cgroup_pids(cg)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if remove:
            rmdir_tree(cg)
        else:
            for sub in (p for p in cg.iterdir() if p.is_dir()) if cg.is_dir() else ():
                rmdir_tree(sub)


# ---------------------------------------------------------------- the nspawn process


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def is_nspawn(pid: int, name: str) -> bool:
    """Guards every signal we send: only the nspawn we started, never a recycled PID."""
    argv = _cmdline(pid)
    return bool(argv) and argv[0].endswith("systemd-nspawn") and f"--machine={name}" in argv


def poweroff(pids: dict[str, int], grace: float) -> None:
    """SIGTERM to nspawn is a clean poweroff; a machine still booting may miss it: repeat."""
    live = {n: p for n, p in pids.items() if is_nspawn(p, n)}
    for pid in live.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    resend = time.monotonic() + 2
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = {n: p for n, p in live.items() if is_nspawn(p, n)}
        if time.monotonic() > resend:
            resend = time.monotonic() + 2
            for pid in live.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


# ---------------------------------------------------------------- mounts


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    found: list[Path] = []
    prefix = str(path).rstrip("/")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: -len(p.parts))


def umount(point: Path) -> None:
    if run(["umount", str(point)], check=False).returncode != 0:
        run(["umount", "-l", str(point)], check=False)


# ---------------------------------------------------------------- network


def netns_names() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


# ---------------------------------------------------------------- runtime files


def register_machine(name: str, leader_pid: int, root: Path) -> None:
    # `systemctl -M`, `busctl -M`, `systemd-run -M` read only LEADER= from this
    # file; without machined on the host nobody else writes it.
    MACHINES_DIR.mkdir(parents=True, exist_ok=True)
    (MACHINES_DIR / name).write_text(
        f"NAME={name}\nLEADER={leader_pid}\nCLASS=container\nSTATE=running\nROOT={root}\n"
    )


def forget_runtime(name: str) -> None:
    # /run is not a tmpfs on this host, so nspawn refuses to remove these itself.
    for sub in ("propagate", "unix-export"):
        shutil.rmtree(NSPAWN_RUN / sub / name, ignore_errors=True)
    (MACHINES_DIR / name).unlink(missing_ok=True)
