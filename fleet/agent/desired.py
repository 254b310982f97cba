"""What the store wants this machine to hold: its schedule plus the global units it admits.

:class:`DesiredReader` reads the machine's schedule, the global units and the
machine's dynamic metadata, and lets :func:`fleet.core.agent_plan.desired_units`
decide which global units this machine runs (their ``[X-Fleet]`` requirements,
and, while there are global units, those of the scheduled units, for Conflicts,
parsed once per body hash). Any store failure propagates: the caller then
changes nothing (B7).
"""

from __future__ import annotations

import logging

from fleet.core.agent_plan import DesiredUnit, desired_units
from fleet.core.model import Machine
from fleet.core.requirements import Requirements, parse_requirements
from fleet.core.unitfile import UnitFile
from fleet.errors import InvalidInput
from fleet.ports import AgentStore

log = logging.getLogger(__name__)


class DesiredReader:
    def __init__(self, store: AgentStore, machine: Machine) -> None:
        self.store = store
        self.machine = machine
        self._requirements: dict[tuple[str, str], Requirements] = {}
        self.globals: frozenset[str] = frozenset()  # the global units of the last read

    async def read(self) -> dict[str, DesiredUnit]:
        machine_id = self.machine.id
        schedule = await self.store.machine_schedule(machine_id)
        globals_ = await self.store.list_global_units()
        view = self.machine.overlaid(await self.store.machine_metadata(machine_id))
        _, drain, _ = await self.store.get_maintenance(machine_id)
        if drain is not None and drain.include_global:
            globals_ = {}  # drained with --include-global: no global unit runs here
        reqs: dict[str, Requirements] = {}
        for name, job in globals_.items():
            found = await self._requirements_of(name, job.hash)
            if found is not None:
                reqs[name] = found
        # A global unit may not run beside a scheduled unit it conflicts with: with
        # global units about, the scheduled units' requirements are needed too.
        scheduled: dict[str, Requirements] = {}
        if reqs:
            for name, job in schedule.items():
                found = await self._requirements_of(name, job.hash)
                if found is not None:
                    scheduled[name] = found
        # Forget the requirements of bodies no unit here has any more.
        live = {(name, job.hash) for name, job in (*globals_.items(), *schedule.items())}
        self._requirements = {k: v for k, v in self._requirements.items() if k in live}
        self.globals = frozenset(reqs)
        return desired_units(view, schedule, globals_, reqs, scheduled)

    async def _requirements_of(self, name: str, hash: str) -> Requirements | None:
        cached = self._requirements.get((name, hash))
        if cached is not None:
            return cached
        body = await self.store.get_unit_body(hash)
        if body is None:
            log.warning("unit %s: body %s missing from the store", name, hash[:7])
            return None
        try:
            reqs = parse_requirements(name, UnitFile.parse(body))
        except InvalidInput as exc:
            log.warning("unit %s: unusable [X-Fleet] section: %s", name, exc)
            return None
        self._requirements[(name, hash)] = reqs
        return reqs
