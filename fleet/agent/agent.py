"""The agent shell: presence, watches, the reconcile loop and unit-state publishing.

:class:`Agent` holds this machine's presence lease, watches only what concerns
it (its ``schedule/<id>/`` entries, the ``global/`` units and its own dynamic
metadata), and on every change (debounced) and every resync interval asks the
pure :func:`fleet.core.agent_plan.plan_agent` what to do, then executes those
actions against systemd in fleet's order, stopping at the first failure. Unit
states are published from systemd's signals plus a periodic resync.

Two promises beyond fleet: an unreachable store changes nothing locally (B7),
and a restarted agent adopts the unit files it finds instead of reloading or
restarting them (B8).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from fleet.core.agent_plan import (
    ActionKind,
    AgentAction,
    AgentReason,
    CurrentUnit,
    DesiredUnit,
    apply_action,
    desired_units,
    plan_agent,
)
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.requirements import Requirements, parse_requirements
from fleet.core.unitfile import UnitFile
from fleet.errors import (
    AlreadyExists,
    FleetError,
    InvalidInput,
    StoreError,
    SystemdError,
)
from fleet.ports import AgentStore, MachineLease, Watchable
from fleet.registry.codec import decode_metadata_value
from fleet.systemd.dbus import NO_SUCH_UNIT, SystemdManager, UnitChange
from fleet.systemd.unitdir import UnitDirectory

log = logging.getLogger(__name__)

# How long stopping may wait for the agent's tasks to end after cancelling them.
STOP_TIMEOUT = 10.0

# systemd active states in which a unit counts as started by us when adopted.
_RUNNING_STATES = frozenset({"active", "activating", "reloading"})


class AgentRegistry(AgentStore, Watchable, Protocol):
    """What the agent needs from the registry (EtcdRegistry implements it)."""

    async def get_unit_body(self, hash: str) -> str | None: ...

    async def list_unit_states(self) -> list[UnitState]: ...


class Agent:
    """One machine's agent. ``await agent.run()`` until :meth:`stop` is called.

    ``units_dir`` is where this process writes unit files; ``systemd_units_dir``
    is the same directory as the managed systemd sees it (they differ only when
    the agent drives a container's systemd from outside, as tests do)."""

    def __init__(
        self,
        store: AgentRegistry,
        systemd: SystemdManager,
        machine: Machine,
        *,
        units_dir: str | Path,
        ttl: float,
        resync_interval: float = 5.0,
        systemd_units_dir: str | Path | None = None,
        shutdown_stops_units: bool = False,
        debounce: float = 0.02,
        retry_interval: float = 1.0,
        job_timeout: float = 30.0,
        register_backoff: tuple[float, float] = (1.0, 60.0),
        watches: bool = True,
        lease_file: str | Path | None = None,
    ) -> None:
        self.store = store
        self.systemd = systemd
        self.machine = machine
        self.units = UnitDirectory(units_dir)
        self.systemd_units_dir = Path(systemd_units_dir or units_dir)
        self.ttl = ttl
        self.resync_interval = resync_interval
        self.shutdown_stops_units = shutdown_stops_units
        self.debounce = debounce
        self.watches = watches
        self.retry_interval = retry_interval
        self.job_timeout = job_timeout
        self.register_backoff = register_backoff
        # Where the presence lease id survives a fleetd restart (B8). It must be
        # machine-local and gone at reboot (fleetd uses /run/fleet/agent.lease):
        # a restarted fleetd resumes the lease instead of waiting for it to expire.
        self.lease_file = Path(lease_file) if lease_file is not None else None

        self.registered = asyncio.Event()
        self.passes = 0  # completed reconcile passes (every action succeeded)
        self.last_error: str | None = None

        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._states_dirty = asyncio.Event()
        self._lease: MachineLease | None = None
        self._current: dict[str, CurrentUnit] = {}
        self._published: dict[str, UnitState] = {}
        self._requirements: dict[tuple[str, str], Requirements] = {}

    # ---- public ---------------------------------------------------------------------

    @property
    def current(self) -> Mapping[str, CurrentUnit]:
        """The units this agent holds and what it did with them."""
        return dict(self._current)

    def stop(self) -> None:
        """Ask :meth:`run` to finish (after purging, if ``shutdown_stops_units``)."""
        self._stopping.set()

    def wake(self) -> None:
        """Reconcile now instead of at the next resync."""
        self._wake.set()

    async def run(self) -> None:
        self.units.ensure()
        await self._adopt()
        changes = self.systemd.subscribe()
        tasks = [
            asyncio.create_task(self._presence_loop(), name="agent-presence"),
            asyncio.create_task(self._reconcile_loop(), name="agent-reconcile"),
            asyncio.create_task(self._state_loop(), name="agent-states"),
            asyncio.create_task(self._systemd_loop(changes), name="agent-systemd"),
        ]
        watched = (
            (f"schedule/{self.machine.id}/", "global/", f"machine-metadata/{self.machine.id}/")
            if self.watches
            else ()  # fleet's disable_watches: the periodic resync alone drives the agent
        )
        for prefix in watched:
            tasks.append(
                asyncio.create_task(self._watch_loop(prefix), name=f"agent-watch {prefix}")
            )
        try:
            stopping = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a task stuck in a library call must not hold fleetd's shutdown.
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                log.error("agent task %s did not stop within %gs", task.get_name(), STOP_TIMEOUT)
            self.systemd.unsubscribe(changes)
        if self.shutdown_stops_units:
            await self._purge()

    # ---- adoption (B8) ------------------------------------------------------------

    async def _adopt(self) -> None:
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
            self._current[name] = CurrentUnit(digest, state)
            log.info("adopted unit %s (hash=%s, %s)", name, digest[:7], active)

    # ---- presence ---------------------------------------------------------------------

    async def _acquire_presence(self) -> MachineLease:
        """Resume the presence our previous process left, else register anew."""
        saved = self._read_lease_file()
        if saved is not None:
            lease = await self.store.resume_machine(saved, self.machine, self.ttl)
            if lease is not None:
                log.info("machine %s resumed its presence (lease %x)", self.machine.id, saved)
                # The previous process's states still hang on this lease: knowing
                # them lets the next publish delete those of units no longer held.
                self._published = {
                    s.name: s
                    for s in await self.store.list_unit_states()
                    if s.machine_id == self.machine.id
                }
                return lease
            self._remove_lease_file()
        lease = await self.store.register_machine(self.machine, self.ttl)
        self._published.clear()  # states hang on the lease: a new lease has none
        self._write_lease_file(lease.lease_id)
        return lease

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

    async def _presence_loop(self) -> None:
        first, cap = self.register_backoff
        delay = first
        while True:
            try:
                lease = await self._acquire_presence()
            except AlreadyExists as exc:
                log.warning(
                    "machine %s still registered (%s): retrying in %gs", self.machine.id, exc, delay
                )
                self.last_error = str(exc)
            except StoreError as exc:
                # etcd is unreachable: come back soon after it is, well within the
                # engine's post-outage grace (2 x ttl), however long it was down.
                delay = min(delay, max(first, self.ttl / 2))
                log.warning(
                    "cannot register machine %s: %s; retrying in %gs", self.machine.id, exc, delay
                )
                self.last_error = str(exc)
            else:
                delay = first
                self._lease = lease
                self.registered.set()
                self._wake.set()
                self._states_dirty.set()
                log.info("machine %s registered (lease %x)", self.machine.id, lease.lease_id)
                while not lease.lost:
                    await asyncio.sleep(min(1.0, self.ttl / 4))
                log.warning("presence lease of machine %s lost: re-registering", self.machine.id)
                self.registered.clear()
                self._lease = None
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)

    # ---- watches ----------------------------------------------------------------------

    async def _watch_loop(self, prefix: str) -> None:
        while True:
            try:
                _, revision = await self.store.list_prefix(prefix)
                self._wake.set()
                async for _batch in self.store.watch_prefix(prefix, revision + 1):
                    self._wake.set()
            except StoreError as exc:
                # StoreCompacted included: relist from scratch.
                log.debug("watch %s interrupted: %s", prefix, exc)
            await asyncio.sleep(self.retry_interval)

    # ---- reconcile ----------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            await self.registered.wait()
            ok = await self.reconcile_once()
            wait = self.resync_interval if ok else min(self.retry_interval, self.resync_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            if self.debounce > 0:
                await asyncio.sleep(self.debounce)  # coalesce a burst of watch events
            self._wake.clear()

    async def reconcile_once(self) -> bool:
        """One pass: read the desired units, plan, execute in order. True if every
        action succeeded. A store failure changes nothing locally (B7)."""
        try:
            desired = await self._read_desired()
        except StoreError as exc:
            log.warning("cannot read the desired units (changing nothing): %s", exc)
            self.last_error = str(exc)
            return False
        ok = await self._execute_plan(plan_agent(desired, self._current), desired)
        if ok:
            self.passes += 1
        self._states_dirty.set()
        return ok

    async def _read_desired(self) -> dict[str, DesiredUnit]:
        machine_id = self.machine.id
        schedule = await self.store.machine_schedule(machine_id)
        globals_ = await self.store.list_global_units()
        raw_meta, _ = await self.store.list_prefix(f"machine-metadata/{machine_id}/")
        view = self.machine.overlaid(
            {
                key.rsplit("/", 1)[-1]: decode_metadata_value(raw, key)
                for key, raw in raw_meta.items()
            }
        )
        reqs: dict[str, Requirements] = {}
        for name, job in globals_.items():
            found = await self._global_requirements(name, job.hash)
            if found is not None:
                reqs[name] = found
        return desired_units(view, schedule, globals_, reqs)

    async def _global_requirements(self, name: str, hash: str) -> Requirements | None:
        cached = self._requirements.get((name, hash))
        if cached is not None:
            return cached
        body = await self.store.get_unit_body(hash)
        if body is None:
            log.warning("global unit %s: body %s missing from the store", name, hash[:7])
            return None
        try:
            reqs = parse_requirements(name, UnitFile.parse(body))
        except InvalidInput as exc:
            log.warning("global unit %s: unusable [X-Fleet] section: %s", name, exc)
            return None
        self._requirements[(name, hash)] = reqs
        return reqs

    async def _execute_plan(
        self, actions: list[AgentAction], desired: Mapping[str, DesiredUnit]
    ) -> bool:
        for action in actions:
            try:
                await self._execute(action, desired)
            except (FleetError, OSError) as exc:
                log.warning("AgentReconciler task failed: %s: %s", action, exc)
                self.last_error = f"{action}: {exc}"
                return False
            apply_action(self._current, action, desired)
            log.info("AgentReconciler completed task: %s", action)
        return True

    async def _execute(self, action: AgentAction, desired: Mapping[str, DesiredUnit]) -> None:
        name = action.unit
        if action.kind is ActionKind.UNLOAD:
            await self._unload(name)
        elif action.kind is ActionKind.LOAD:
            await self._load(name, desired[name].hash)
        elif action.kind is ActionKind.RELOAD:
            await self.systemd.reload()
        elif action.kind is ActionKind.START:
            # Asynchronous like fleet: the job's outcome arrives as state changes.
            await self.systemd.start_unit(name)
        elif action.kind is ActionKind.STOP:
            await self.systemd.stop_unit(name)

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

    async def _purge(self) -> None:
        """fleet's Purge: stop and unload everything, drop states, leave the cluster."""
        actions = [
            dataclasses.replace(a, reason=AgentReason.PURGE) for a in plan_agent({}, self._current)
        ]
        await self._execute_plan(actions, {})
        lease = self._lease
        with contextlib.suppress(StoreError):
            for name in list(self._published):
                await self.store.delete_unit_state(name, self.machine.id)
            self._published.clear()
            if lease is not None:
                await self.store.unregister_machine(lease)
                self._lease = None
                self.registered.clear()
        self._remove_lease_file()

    # ---- unit states ----------------------------------------------------------------------

    async def _systemd_loop(self, changes: asyncio.Queue[UnitChange]) -> None:
        while True:
            change = await changes.get()
            if change.unit in self._current:
                self._states_dirty.set()

    async def _state_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._states_dirty.wait(), self.resync_interval)
            if self.debounce > 0:
                await asyncio.sleep(self.debounce)
            self._states_dirty.clear()
            try:
                await self.publish_states()
            except (StoreError, SystemdError) as exc:
                log.warning("unit state publishing failed: %s", exc)
                await asyncio.sleep(self.retry_interval)
                self._states_dirty.set()

    async def publish_states(self) -> None:
        """Publish every held unit's state that changed; delete states of units
        no longer held."""
        lease = self._lease
        if lease is None or lease.lost:
            return
        current = dict(self._current)
        triples = await self.systemd.unit_states(current) if current else {}
        for name, unit in sorted(current.items()):
            if not unit.hash:
                continue
            load, active, sub = triples.get(name, ("not-found", "inactive", "dead"))
            state = UnitState(name, self.machine.id, load, active, sub, unit.hash, unit.state)
            if self._published.get(name) != state:
                await self.store.publish_unit_state(lease, state)
                self._published[name] = state
        for name in sorted(set(self._published) - set(current)):
            await self.store.delete_unit_state(name, self.machine.id)
            del self._published[name]
