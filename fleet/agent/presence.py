"""This machine's presence in the cluster: its machine record on a lease of ``ttl`` seconds.

:class:`Presence` registers the machine, holds the lease while it lives and
registers again once it is lost (learnt from ``lease.wait_lost()``, never by
polling). Where a lease file is configured, the lease id survives a fleetd
restart there, so the next process resumes the presence instead of waiting
for it to expire (B8). ``registered`` is set while a lease is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from fleet.core.model import Machine
from fleet.errors import AlreadyExists, StoreError
from fleet.ports import AgentStore, Clock, MachineLease

log = logging.getLogger(__name__)


class Presence:
    """``await presence.run()`` forever (cancel it to stop); :meth:`leave` revokes."""

    def __init__(
        self,
        store: AgentStore,
        machine: Machine,
        clock: Clock,
        *,
        ttl: float,
        backoff: tuple[float, float],
        lease_file: Path | None,
        on_registered: Callable[[], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.store = store
        self.machine = machine
        self.clock = clock
        self.ttl = ttl
        self.backoff = backoff
        # Machine-local and gone at reboot (fleetd uses /run/fleet/agent.lease).
        self.lease_file = lease_file
        self.registered = asyncio.Event()
        self.resumed = False  # the held lease is one a previous process left
        self._lease: MachineLease | None = None
        self._on_registered = on_registered
        self._on_error = on_error

    @property
    def lease(self) -> MachineLease | None:
        """The held lease, None while unregistered."""
        return self._lease

    async def run(self) -> None:
        first, cap = self.backoff
        delay = first
        while True:
            try:
                lease = await self._acquire()
            except AlreadyExists as exc:
                log.warning(
                    "machine %s still registered (%s): retrying in %gs", self.machine.id, exc, delay
                )
                self._on_error(str(exc))
            except StoreError as exc:
                # etcd is unreachable: come back soon after it is, well within the
                # engine's post-outage grace (2 x ttl), however long it was down.
                delay = min(delay, max(first, self.ttl / 2))
                log.warning(
                    "cannot register machine %s: %s; retrying in %gs", self.machine.id, exc, delay
                )
                self._on_error(str(exc))
            else:
                delay = first
                await self._hold(lease)
                continue
            await self.clock.sleep(delay)
            delay = min(delay * 2, cap)

    async def leave(self) -> None:
        """Revoke the lease (the machine record and its states vanish) and forget it."""
        lease, self._lease = self._lease, None
        self.registered.clear()
        try:
            if lease is not None:
                await self.store.unregister_machine(lease)
        finally:
            self._remove_lease_file()

    async def _hold(self, lease: MachineLease) -> None:
        self._lease = lease
        self.registered.set()
        self._on_registered()
        log.info("machine %s registered (lease %x)", self.machine.id, lease.lease_id)
        # Cancelled here (the agent stops), the lease stays held: a purge revokes
        # it, otherwise it is left for the next process to resume (B8).
        why = await lease.wait_lost()
        self.registered.clear()
        self._lease = None
        log.warning("presence lease of machine %s lost (%s): re-registering", self.machine.id, why)

    async def _acquire(self) -> MachineLease:
        """Resume the presence our previous process left, else register anew."""
        saved = self._read_lease_file()
        if saved is not None:
            lease = await self.store.resume_machine(saved, self.machine, self.ttl)
            if lease is not None:
                log.info("machine %s resumed its presence (lease %x)", self.machine.id, saved)
                self.resumed = True
                return lease
            self._remove_lease_file()
        lease = await self.store.register_machine(self.machine, self.ttl)
        self.resumed = False
        self._write_lease_file(lease.lease_id)
        return lease

    # ---- the lease file ------------------------------------------------------------

    def _read_lease_file(self) -> int | None:
        if self.lease_file is None:
            return None
        try:
            machine_id, lease_hex = self.lease_file.read_text().split()
            lease_id = int(lease_hex, 16)
        except (OSError, ValueError):
            return None
        return lease_id if machine_id == self.machine.id else None

    def _write_lease_file(self, lease_id: int) -> None:
        if self.lease_file is None:
            return
        tmp = self.lease_file.with_name(self.lease_file.name + ".tmp")
        try:
            self.lease_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(f"{self.machine.id} {lease_id:x}\n")
            os.replace(tmp, self.lease_file)
        except OSError as exc:
            # Only costs the fast path of the next restart.
            log.warning("cannot record the presence lease in %s: %s", self.lease_file, exc)

    def _remove_lease_file(self) -> None:
        if self.lease_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.lease_file.unlink()
