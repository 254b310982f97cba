"""The action executor: the only code that changes what this agent holds.

:class:`ActionExecutor` applies :class:`~fleet.core.agent_plan.AgentAction`
values to systemd and the units directory in the order the plan gives,
stopping at the first failure, and keeps ``current`` (each held unit's hash
and whether it was loaded or launched) in step with what succeeded. At start it
adopts the unit files a previous agent left (B8), so a unit systemd still runs
counts as launched and is not restarted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import assert_never

from fleet.agent.unitdir import UnitDirectory
from fleet.core.agent_plan import (
    ActionKind,
    AgentAction,
    CurrentUnit,
    DesiredUnit,
    apply_action,
)
from fleet.core.model import DesiredState
from fleet.core.unitfile import UnitFile
from fleet.errors import FleetError, StoreError, SystemdError
from fleet.ports import NO_SUCH_UNIT, AgentStore, SystemdManager

log = logging.getLogger(__name__)

# systemd active states in which a unit counts as started by us when adopted.
_RUNNING_STATES = frozenset({"active", "activating", "reloading"})


class ActionExecutor:
    """Executes plans for one units directory. ``systemd_units_dir`` is that
    directory as the managed systemd sees it (it differs from ``units.path``
    only when the agent drives a container's systemd from outside)."""

    def __init__(
        self,
        store: AgentStore,
        systemd: SystemdManager,
        units: UnitDirectory,
        *,
        systemd_units_dir: Path,
        job_timeout: float,
        on_error: Callable[[str], None],
    ) -> None:
        self.store = store
        self.systemd = systemd
        self.units = units
        self.systemd_units_dir = systemd_units_dir
        self.job_timeout = job_timeout
        self.current: dict[str, CurrentUnit] = {}
        self._on_error = on_error

    async def adopt(self) -> None:
        """Take over the unit files a previous agent left: a unit systemd still
        runs counts as launched, so a matching schedule causes no action at all."""
        names = self.units.list()
        if not names:
            return
        states = await self.systemd.unit_states(names)
        for name in names:
            digest = self.units.hash_of(name)
            if digest is None:
                continue
            load, active, _sub = states.get(name, ("not-found", "inactive", "dead"))
            if load == "not-found":
                # A file systemd does not know (it lost its link): an empty hash
                # makes the plan unload or re-load it rather than trust it.
                digest = ""
            launched = active in _RUNNING_STATES
            state = DesiredState.LAUNCHED if launched else DesiredState.LOADED
            self.current[name] = CurrentUnit(digest, state)
            log.info("adopted unit %s (hash=%s, %s)", name, digest[:7], active)

    async def execute_plan(
        self, actions: Sequence[AgentAction], desired: Mapping[str, DesiredUnit]
    ) -> bool:
        """Run ``actions`` in order; False (reported to ``on_error``) at the first failure."""
        for action in actions:
            try:
                await self.execute(action, desired)
            except (FleetError, OSError) as exc:
                log.warning("AgentReconciler task failed: %s: %s", action, exc)
                self._on_error(f"{action}: {exc}")
                return False
            apply_action(self.current, action, desired)
            log.info("AgentReconciler completed task: %s", action)
        return True

    async def execute(self, action: AgentAction, desired: Mapping[str, DesiredUnit]) -> None:
        name = action.unit
        match action.kind:
            case ActionKind.UNLOAD:
                await self._unload(name)
            case ActionKind.LOAD:
                await self._load(name, desired[name].hash)
            case ActionKind.RELOAD:
                await self.systemd.reload()
            case ActionKind.STOP:
                await self.systemd.stop_unit(name)
            case ActionKind.START:
                # Asynchronous like fleet: the job's outcome arrives as state changes.
                await self.systemd.start_unit(name)
            case _:
                assert_never(action.kind)

    async def _load(self, name: str, hash: str) -> None:
        body = await self.store.get_unit_body(hash)
        if body is None:
            raise StoreError(f"body {hash} of unit {name} is missing from the store")
        has_install = UnitFile.parse(body).has_install
        written = self.units.write(name, body)
        if written != hash:
            log.warning("unit %s: body hashes to %s, not %s", name, written[:7], hash[:7])
        path = str(self.systemd_units_dir / name)
        try:
            await self.systemd.link_unit_files([path], runtime=True, force=True)
            if has_install:
                await self.systemd.enable_unit_files([path], runtime=True, force=True)
        except SystemdError:
            self.units.remove(name)
            raise

    async def _unload(self, name: str) -> None:
        # Only a successful stop lets the unit go (fleet issue #1216): otherwise
        # the file stays and the next pass tries again.
        try:
            job = await self.systemd.stop_unit(name)
            await self.systemd.wait_job(job, self.job_timeout)
        except SystemdError as exc:
            if exc.dbus_name != NO_SUCH_UNIT:
                raise
        try:
            await self.systemd.disable_unit_files([name], runtime=True)
        except SystemdError as exc:
            log.info("unit %s: disable failed (ignored): %s", name, exc)
        with contextlib.suppress(SystemdError):
            await self.systemd.reset_failed_unit(name)
        self.units.remove(name)
