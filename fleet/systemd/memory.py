"""An in-memory systemd manager: :class:`fleet.ports.SystemdManager` without a machine.

:class:`InMemorySystemd` is for the agent's logic tests and for benchmarks;
fleetd never imports it. It models just what the agent relies on, and passes
the same contract tests as the D-Bus adapter (``tests/systemd/test_contract.py``):

- a unit exists once its file is linked; its file is read when it is first
  needed and again at every :meth:`~InMemorySystemd.reload` (a changed file is
  not seen before a reload, as with systemd);
- a start makes a unit ``active``: ``running`` for a service, ``exited`` for a
  ``Type=oneshot`` with ``RemainAfterExit=yes`` (``inactive`` without it);
  an ``ExecStart`` of ``/bin/false`` or ``/usr/bin/false`` fails: a oneshot's
  job ends ``failed``, any other service starts (job ``done``) and then fails,
  or with ``Restart=always|on-failure`` sits in ``activating``/``auto-restart``;
  a service's ``Result`` is ``success``, ``exit-code`` or (after
  :meth:`~InMemorySystemd.crash`) ``signal``;
- a stop makes it ``inactive``/``dead`` (a failed unit stays failed until
  reset-failed); unknown units raise NO_SUCH_UNIT where systemd does;
- ``[Install] WantedBy=``/``RequiredBy=`` of an enabled unit make a start of
  that target start the unit too;
- jobs finish at once: each result is kept for :meth:`~InMemorySystemd.wait_job`
  and every state change and job end is a :class:`~fleet.ports.UnitChange` hint.

For tests, :attr:`~InMemorySystemd.calls` records every call (operation and
argument) and :meth:`~InMemorySystemd.fail` makes the next calls of an
operation raise; :meth:`~InMemorySystemd.crash` makes a running unit fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fleet.core.unitfile import UnitFile
from fleet.errors import FleetError, SystemdError
from fleet.ports.systemd import NO_SUCH_UNIT, FileChange, UnitChange, UnitTriple
from fleet.systemd.jobs import JobResults

__all__ = ["OPERATIONS", "InMemorySystemd"]

FILE_NOT_FOUND = "org.freedesktop.DBus.Error.FileNotFound"
BAD_UNIT_SETTING = "org.freedesktop.systemd1.BadUnitSetting"
INJECTED = "org.freedesktop.DBus.Error.Failed"

_RUNTIME_DIR = PurePosixPath("/run/systemd/system")
_CONFIG_DIR = PurePosixPath("/etc/systemd/system")
_FAILING_COMMANDS = frozenset({"/bin/false", "/usr/bin/false"})
# What a unit that is not a service does once started.
_ACTIVE_SUB = {
    ".socket": "listening",
    ".timer": "waiting",
    ".path": "waiting",
    ".target": "active",
    ".mount": "mounted",
    ".automount": "waiting",
    ".device": "plugged",
}
OPERATIONS = frozenset(
    {
        "link_unit_files",
        "enable_unit_files",
        "disable_unit_files",
        "unit_file_state",
        "reload",
        "start_unit",
        "stop_unit",
        "reset_failed_unit",
        "wait_job",
        "unit_states",
        "unit_results",
    }
)
"""What :attr:`InMemorySystemd.calls` records and :meth:`InMemorySystemd.fail` can break."""
_QUEUE_SIZE = 4096


@dataclass
class _Unit:
    name: str
    load: str  # loaded | not-found | bad-setting
    config: UnitFile | None
    active: str = "inactive"
    sub: str = "dead"
    result: str = "success"  # systemd's Result of a service

    @property
    def triple(self) -> UnitTriple:
        return (self.load, self.active, self.sub)


@dataclass
class _Failure:
    error: Exception
    times: int | None  # None: until clear_failures()


class InMemorySystemd:
    """A systemd manager in this process. ``InMemorySystemd()`` takes no arguments;
    unit files are read from the paths given to :meth:`link_unit_files`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        """(operation, argument) of every call, in order: the unit name, path or
        job id it was about ("" for reload); a call naming several units or
        paths is one entry per unit or path."""
        self._links: dict[str, tuple[str, bool]] = {}  # name -> (path, runtime)
        self._wanted_by: dict[str, set[str]] = {}  # enabled unit -> the targets wanting it
        self._units: dict[str, _Unit] = {}  # units "in memory", as systemd keeps them
        self._jobs = itertools.count(1)
        self._job_results = JobResults()
        self._queues: list[asyncio.Queue[UnitChange]] = []
        self._failures: dict[str, _Failure] = {}

    # ---- test controls -------------------------------------------------------------

    def fail(
        self, operation: str, error: Exception | None = None, *, times: int | None = 1
    ) -> None:
        """Make the next ``times`` calls (None: every call until :meth:`clear_failures`)
        of ``operation`` (a method name such as ``"start_unit"``) raise ``error``,
        by default a SystemdError. The call is still recorded in :attr:`calls`."""
        if operation not in OPERATIONS:
            raise ValueError(f"InMemorySystemd has no operation {operation!r}")
        error = error or SystemdError(f"{operation}: {INJECTED}: injected failure", INJECTED)
        self._failures[operation] = _Failure(error, times)

    def clear_failures(self) -> None:
        self._failures.clear()

    def crash(self, name: str) -> None:
        """The main process of running unit ``name`` dies: the unit fails."""
        unit = self._units.get(name)
        if unit is None or unit.active != "active":
            raise ValueError(f"unit {name} is not running")
        unit.result = "signal"
        self._set_state(unit, "failed", "failed")

    def started(self, name: str) -> int:
        """How many times ``start_unit(name)`` was called."""
        return self.calls.count(("start_unit", name))

    # ---- unit files ------------------------------------------------------------------

    async def link_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        changes: list[FileChange] = []
        for path in paths:
            self._call("link_unit_files", path)
            name = self._checked_path(path)
            changes += self._link(name, path, runtime)
        return changes

    async def enable_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        changes: list[FileChange] = []
        for path in paths:
            self._call("enable_unit_files", path)
            name = self._checked_path(path)
            config = self._parse(Path(path))
            targets = [] if config is None else _install_targets(config)
            if not targets:
                continue  # no [Install]: nothing to enable, as systemd answers
            changes += self._link(name, path, runtime)
            self._wanted_by.setdefault(name, set()).update(targets)
            base = _RUNTIME_DIR if runtime else _CONFIG_DIR
            changes += [("symlink", str(base / f"{t}.wants" / name), path) for t in targets]
        return changes

    async def disable_unit_files(
        self, names: Sequence[str], runtime: bool = True
    ) -> list[FileChange]:
        changes: list[FileChange] = []
        for name in names:
            self._call("disable_unit_files", name)
            base = _RUNTIME_DIR if runtime else _CONFIG_DIR
            for target in sorted(self._wanted_by.pop(name, set())):
                changes.append(("unlink", str(base / f"{target}.wants" / name), ""))
            link = self._links.get(name)
            if link is not None and link[1] == runtime:
                del self._links[name]
                changes.append(("unlink", str(base / name), ""))
        return changes

    async def unit_file_state(self, name: str) -> str:
        """As the D-Bus adapter's: ``linked-runtime``, ``enabled-runtime``, ..."""
        self._call("unit_file_state", name)
        link = self._links.get(name)
        if link is None:
            raise SystemdError(
                f"GetUnitFileState: {FILE_NOT_FOUND}: No such file or directory", FILE_NOT_FOUND
            )
        state = "enabled" if self._wanted_by.get(name) else "linked"
        return f"{state}-runtime" if link[1] else state

    async def reload(self) -> None:
        self._call("reload", "")
        for name in sorted(set(self._units) | set(self._links)):
            fresh = self._read(name)
            unit = self._units.get(name)
            if unit is None:
                if fresh.load != "not-found":
                    self._units[name] = fresh
            elif fresh.load == "not-found" and unit.active == "inactive":
                del self._units[name]  # nothing refers to it any more
            else:
                unit.load, unit.config = fresh.load, fresh.config

    # ---- jobs ------------------------------------------------------------------------

    async def start_unit(self, name: str, mode: str = "replace") -> str:
        self._call("start_unit", name)
        unit = self._unit(name)
        if unit is None or unit.load != "loaded":
            raise self._not_loaded("StartUnit", name, unit)
        job = self._start(unit)
        for other in sorted(self._wants(name)):
            wanted = self._unit(other)
            if wanted is not None and wanted.load == "loaded" and wanted.active != "active":
                self._start(wanted)
        return job

    async def stop_unit(self, name: str, mode: str = "replace") -> str:
        self._call("stop_unit", name)
        unit = self._unit(name)
        if unit is None or (unit.load != "loaded" and unit.active == "inactive"):
            raise SystemdError(f"StopUnit: {NO_SUCH_UNIT}: Unit {name} not loaded.", NO_SUCH_UNIT)
        if unit.active not in ("inactive", "failed"):
            self._set_state(unit, "inactive", "dead")
        return self._finish_job(unit.name, "done")

    async def reset_failed_unit(self, name: str) -> None:
        self._call("reset_failed_unit", name)
        unit = self._units.get(name)
        if unit is None:
            raise SystemdError(
                f"ResetFailedUnit: {NO_SUCH_UNIT}: Unit {name} not loaded.", NO_SUCH_UNIT
            )
        if unit.active == "failed":
            self._set_state(unit, "inactive", "dead")
            if unit.load == "not-found":
                del self._units[name]

    # ASYNC109: timeout is port API (0 only looks; the Timeout error names the limit).
    async def wait_job(self, job: str, timeout: float) -> str:  # noqa: ASYNC109
        self._call("wait_job", job)
        return await self._job_results.wait(job, timeout)

    # ---- states ------------------------------------------------------------------------

    async def unit_states(self, names: Iterable[str]) -> dict[str, UnitTriple]:
        wanted = sorted(set(names))
        for name in wanted:
            self._call("unit_states", name)
        out: dict[str, UnitTriple] = {}
        for name in wanted:
            unit = self._unit(name)
            out[name] = unit.triple if unit is not None else ("not-found", "inactive", "dead")
        return out

    async def unit_results(self, names: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(names))
        for name in wanted:
            self._call("unit_results", name)
        out: dict[str, str] = {}
        for name in wanted:
            unit = self._unit(name)
            out[name] = unit.result if unit is not None and name.endswith(".service") else ""
        return out

    def subscribe(self) -> asyncio.Queue[UnitChange]:
        queue: asyncio.Queue[UnitChange] = asyncio.Queue(maxsize=_QUEUE_SIZE)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[UnitChange]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    # ---- the model -----------------------------------------------------------------------

    def _call(self, operation: str, argument: str) -> None:
        self.calls.append((operation, argument))
        failure = self._failures.get(operation)
        if failure is None:
            return
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                del self._failures[operation]
        raise failure.error

    def _checked_path(self, path: str) -> str:
        pure = PurePosixPath(path)
        if not pure.is_absolute():
            raise SystemdError(
                f"{path}: not an absolute path", "org.freedesktop.DBus.Error.InvalidArgs"
            )
        if not Path(path).is_file():
            raise SystemdError(
                f"{path}: {FILE_NOT_FOUND}: No such file or directory", FILE_NOT_FOUND
            )
        return pure.name

    def _link(self, name: str, path: str, runtime: bool) -> list[FileChange]:
        if self._links.get(name) == (path, runtime):
            return []
        self._links[name] = (path, runtime)
        return [("symlink", str((_RUNTIME_DIR if runtime else _CONFIG_DIR) / name), path)]

    def _unit(self, name: str) -> _Unit | None:
        """The unit in memory, loading it on demand as systemd does."""
        unit = self._units.get(name)
        if unit is None:
            fresh = self._read(name)
            if fresh.load == "not-found":
                return None
            unit = self._units[name] = fresh
        return unit

    def _read(self, name: str) -> _Unit:
        link = self._links.get(name)
        if link is None:
            return _Unit(name, "not-found", None)
        config = self._parse(Path(link[0]))
        if config is None:
            return _Unit(name, "not-found", None)
        if name.endswith(".service") and not config.values("Service", "ExecStart"):
            return _Unit(name, "bad-setting", config)
        return _Unit(name, "loaded", config)

    @staticmethod
    def _parse(path: Path) -> UnitFile | None:
        try:
            return UnitFile.parse(path.read_bytes())
        except (OSError, FleetError):
            return None

    def _wants(self, target: str) -> set[str]:
        return {name for name, targets in self._wanted_by.items() if target in targets}

    def _start(self, unit: _Unit) -> str:
        if unit.active == "active":
            return self._finish_job(unit.name, "done")
        config = unit.config
        assert config is not None  # loaded
        if not unit.name.endswith(".service"):
            self._set_state(
                unit, "active", _ACTIVE_SUB.get(PurePosixPath(unit.name).suffix, "active")
            )
            return self._finish_job(unit.name, "done")
        service_type = (config.values("Service", "Type") or ["simple"])[-1]
        fails = _fails(config)
        unit.result = "exit-code" if fails else "success"
        if service_type == "oneshot":
            if fails:
                self._set_state(unit, "failed", "failed")
                return self._finish_job(unit.name, "failed")
            if _yes(config.values("Service", "RemainAfterExit")):
                self._set_state(unit, "active", "exited")
            else:
                self._set_state(unit, "inactive", "dead")
            return self._finish_job(unit.name, "done")
        self._set_state(unit, "active", "running")
        job = self._finish_job(unit.name, "done")
        if fails:
            # The process exited 1: systemd restarts it if told to, else it failed.
            restart = (config.values("Service", "Restart") or ["no"])[-1]
            if restart in ("always", "on-failure", "on-abnormal", "on-abort"):
                self._set_state(unit, "activating", "auto-restart")
            else:
                self._set_state(unit, "failed", "failed")
        return job

    def _set_state(self, unit: _Unit, active: str, sub: str) -> None:
        if (unit.active, unit.sub) != (active, sub):
            unit.active, unit.sub = active, sub
            self._publish(UnitChange(unit.name, active=active, sub=sub))

    def _finish_job(self, name: str, result: str) -> str:
        job = f"/org/freedesktop/systemd1/job/{next(self._jobs)}"
        self._job_results.finished(job, result)
        self._publish(UnitChange(name, job_result=result))
        return job

    def _publish(self, change: UnitChange) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(change)

    def _not_loaded(self, member: str, name: str, unit: _Unit | None) -> SystemdError:
        if unit is not None and unit.load == "bad-setting":
            return SystemdError(
                f"{member}: {BAD_UNIT_SETTING}: Unit {name} has a bad unit file setting.",
                BAD_UNIT_SETTING,
            )
        return SystemdError(f"{member}: {NO_SUCH_UNIT}: Unit {name} not found.", NO_SUCH_UNIT)


def _install_targets(config: UnitFile) -> list[str]:
    targets: list[str] = []
    for option in ("WantedBy", "RequiredBy"):
        for value in config.values("Install", option):
            targets += value.split()
    return list(dict.fromkeys(targets))


def _fails(config: UnitFile) -> bool:
    commands = [v for v in config.values("Service", "ExecStart") if v]
    if not commands:
        return False
    command = commands[-1].split()[0]
    prefixes = command[: len(command) - len(command.lstrip("-@:+!"))]
    return "-" not in prefixes and command.lstrip("-@:+!") in _FAILING_COMMANDS


def _yes(values: list[str]) -> bool:
    return bool(values) and values[-1].lower() in ("yes", "true", "1", "on")
