"""Benchmark (not a test): what each library fleetd imports costs in resident memory.

Each row is a fresh interpreter that imports one module and reports its
``VmRSS``, ``RssAnon`` (heap: Python objects, pydantic's schemas, ...) and
``RssFile`` (mapped shared objects and files it touched, such as grpc's
``cygrpc`` extension) from ``/proc/self/status``; the floor (``python -c pass``)
is measured in the same run and every row is also shown above it. Libraries
overlap (fastapi includes pydantic and starlette; aetcd includes grpc), so the
rows do not add up to ``fleet.daemon``, the whole of fleetd's imports.

    .venv/bin/python bench/fleetd_memory.py            # median of 3 runs per row
    .venv/bin/python bench/fleetd_memory.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULES = [
    "grpc",
    "aetcd",
    "pydantic",
    "starlette.applications",
    "fastapi",
    "uvicorn",
    "dbus_fast",
    "prometheus_client",
    "fleet.core.agent_plan",
    "fleet.registry.etcd",
    "fleet.agent",
    "fleet.engine",
    "fleet.api.app",
    "fleet.daemon",
]
FIELDS = ("VmRSS", "RssAnon", "RssFile")
PROBE = """
{imports}
fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(*(int(fields[name].split()[0]) for name in {fields!r}))
"""
# The target for a whole idle fleetd (KiB).
IDLE_TARGET_KIB = 50 * 1024


def measure(module: str | None) -> tuple[int, ...]:
    """(VmRSS, RssAnon, RssFile) in KiB after importing ``module`` (None: nothing)."""
    imports = f"import {module}" if module else "pass"
    code = PROBE.format(imports=imports, fields=FIELDS)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return tuple(int(v) for v in out.split())


def median_of(module: str | None, runs: int) -> tuple[int, ...]:
    samples = [measure(module) for _ in range(runs)]
    return tuple(int(statistics.median(s[i] for s in samples)) for i in range(len(FIELDS)))


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    floor = median_of(None, args.runs)
    print(f"python {sys.version.split()[0]}, median of {args.runs} runs per row (MiB)\n")
    print("| import | VmRSS | above floor | RssAnon above | RssFile above |")
    print("|---|---:|---:|---:|---:|")
    print(f"| (floor: `python -c pass`) | {mib(floor[0])} | 0 | 0 | 0 |")
    whole = floor
    for module in MODULES:
        rss, anon, file = median_of(module, args.runs)
        print(
            f"| `{module}` | {mib(rss)} | {mib(rss - floor[0])} | "
            f"{mib(anon - floor[1])} | {mib(file - floor[2])} |"
        )
        if module == "fleet.daemon":
            whole = (rss, anon, file)
    verdict = "meets" if whole[0] <= IDLE_TARGET_KIB else "misses"
    print(
        f"\nfleet.daemon's imports alone: {mib(whole[0])} MiB; "
        f"{verdict} the idle target of {mib(IDLE_TARGET_KIB)} MiB before fleetd does anything"
    )


if __name__ == "__main__":
    main()
