"""The ``[X-Fleet]`` requirements of the units this agent holds, read from their files.

The unit files the agent wrote are on disk, so what they ask for can be known
without etcd (the disconnect guard must act while etcd is unreachable). Each
file is parsed once per (name, hash); a file not written yet is not cached.
"""

from __future__ import annotations

import contextlib
import logging

from fleet.agent.unitdir import UnitDirectory
from fleet.core.requirements import Requirements, parse_requirements
from fleet.core.unitfile import UnitFile
from fleet.errors import FleetError

log = logging.getLogger(__name__)


class LocalRequirements:
    def __init__(self, units: UnitDirectory) -> None:
        self.units = units
        self._cache: dict[str, tuple[str, Requirements | None]] = {}

    def get(self, name: str, hash: str) -> Requirements | None:
        """The requirements of unit ``name`` whose body is ``hash``; None if its file
        is missing or its ``[X-Fleet]`` section cannot be read."""
        cached = self._cache.get(name)
        if cached is not None and cached[0] == hash:
            return cached[1]
        body = None
        with contextlib.suppress(FleetError, OSError):
            body = self.units.read(name)
        if body is None:
            return None  # not written yet (a unit loaded and started in one pass)
        try:
            found: Requirements | None = parse_requirements(name, UnitFile.parse(body.decode()))
        except (FleetError, UnicodeDecodeError) as exc:
            log.warning("unit %s: cannot read its [X-Fleet] section: %s", name, exc)
            found = None
        self._cache[name] = (hash, found)
        return found

    def forget_except(self, names: set[str]) -> None:
        for name in set(self._cache) - names:
            del self._cache[name]
