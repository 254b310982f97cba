"""The systemd port: what the agent asks of the machine's service manager.

The D-Bus adapter (:mod:`fleet.systemd.dbus`) implements it against the real
systemd; the in-memory systemd used by the agent's logic tests implements it
too, and both pass the same contract tests (``tests/systemd/test_contract.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
"""The ``dbus_name`` of the SystemdError raised for a unit systemd does not know."""

UnitTriple = tuple[str, str, str]
"""(LoadState, ActiveState, SubState) as systemd reports them."""

FileChange = tuple[str, str, str]
"""(type, symlink, target) of one change systemd made to its unit links."""


@dataclass(frozen=True, slots=True)
class UnitChange:
    """A hint that ``unit``'s state may have changed; ``active``/``sub`` are set
    when the signal carried them. ``job_result`` is set when a job ended."""

    unit: str
    active: str | None = None
    sub: str | None = None
    job_result: str | None = None


class SystemdManager(Protocol):
    """systemd's manager as the agent drives it. Failures raise SystemdError
    (with systemd's error name in ``dbus_name``); a job that does not finish in
    time raises Timeout."""

    async def link_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        """Make the files at ``paths`` known to systemd under their base names."""

    async def enable_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        """Apply the files' ``[Install]`` sections."""

    async def disable_unit_files(
        self, names: Sequence[str], runtime: bool = True
    ) -> list[FileChange]: ...

    async def reload(self) -> None:
        """Re-read every unit file (daemon-reload); returns when done."""

    async def start_unit(self, name: str, mode: str = "replace") -> str:
        """Queue a start job; its id (pass it to :meth:`wait_job`)."""

    async def stop_unit(self, name: str, mode: str = "replace") -> str:
        """Queue a stop job; NO_SUCH_UNIT for a unit systemd does not know."""

    async def reset_failed_unit(self, name: str) -> None: ...

    # ASYNC109: timeout is port API (0 only looks; the Timeout error names the limit).
    async def wait_job(self, job: str, timeout: float) -> str:  # noqa: ASYNC109
        """The job's result: ``done``, ``failed``, ``canceled``, ``dependency``, ...
        Timeout if it is not finished within ``timeout`` (0: only look); a
        result that arrives after a timeout is still returned by a later call."""

    async def unit_states(self, names: Iterable[str]) -> dict[str, UnitTriple]:
        """(load, active, sub) for each name; unknown units come back ``not-found``."""

    async def unit_results(self, names: Iterable[str]) -> dict[str, str]:
        """systemd's ``Result`` of each service (``success``, ``exit-code``,
        ``signal``, ...); "" for a unit that has none (not a service, unknown)."""

    def subscribe(self) -> asyncio.Queue[UnitChange]:
        """A new queue of state-change hints (bounded: a slow reader loses hints,
        never memory; the agent's resync repairs what was dropped)."""

    def unsubscribe(self, queue: asyncio.Queue[UnitChange]) -> None: ...
