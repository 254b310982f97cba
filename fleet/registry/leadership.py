"""The engine's side of etcd (EngineStore): leadership, fenced schedule
writes and unit body garbage collection.

Leadership is ``engine/leader`` on a lease this process keeps alive; every
engine write is a transaction comparing that key's value and mod_revision,
so a deposed leader cannot write (etcd locks alone are not mutual exclusion).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fleet.core.events import Event
from fleet.core.maintenance import DrainStatus
from fleet.core.model import PlacementReason
from fleet.errors import NotLeader, StoreError
from fleet.ports.registry import Leadership, ScheduleChange
from fleet.registry import codec
from fleet.registry.events import EventsRegistry
from fleet.registry.keys import range_end
from fleet.registry.leases import EtcdLeadership
from fleet.registry.ops import LESS, MAX_TXN_OPS, batches, created, delete, modified, put, valued

log = logging.getLogger(__name__)


class LeadershipRegistry(EventsRegistry):
    """EngineStore (its events follow the fenced schedule writes, fenced too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events_task: asyncio.Task[None] | None = None

    async def campaign(
        self, machine_id: str, version: str, ttl: float, engine_version: int = 0
    ) -> Leadership | None:
        """One attempt at ``engine/leader`` behind the engine version gate.

        ``engine/version`` holds the newest engine version registered: an engine
        older than it never leads (None, without granting a lease); a newer one
        raises it (compare-and-swap) and deposes a leader of an older version by
        deleting its record, which fences that leader's writes at once.
        """
        if not await self._pass_version_gate(engine_version):
            return None
        key = self.keys.engine_leader()
        version_key = self.keys.engine_version()
        lease_id = await self._grant(ttl)
        value = codec.encode_leader(machine_id, version, lease_id, engine_version)
        try:
            response = await self._txn(
                [created(key, 0), valued(version_key, codec.encode_engine_version(engine_version))],
                [put(key, value, lease_id)],
            )
        except BaseException:
            await self._revoke_quietly(lease_id)
            raise
        if not response.succeeded:
            await self._revoke(lease_id)
            return None
        leadership = EtcdLeadership(
            machine_id,
            version=version,
            lease_id=lease_id,
            ttl=ttl,
            value=value,
            revision=int(response.header.revision),
        )

        async def still_leader() -> str | None:
            kv = await self._get(key)
            if kv is None or kv.mod_revision != leadership.mod_revision:
                return "engine/leader was deleted or rewritten"
            return None

        self._start_keepalive(leadership, still_leader)
        return leadership

    async def engine_version(self) -> int | None:
        """The newest engine version registered in ``engine/version`` (None: none yet)."""
        key = self.keys.engine_version()
        kv = await self._get(key)
        return None if kv is None else codec.decode_engine_version(kv.value, self._where(key))

    async def _pass_version_gate(self, mine: int) -> bool:
        """False if a newer engine version is registered; otherwise make sure the
        key holds ``mine`` and no leader of an older version remains."""
        version_key, leader_key = self.keys.engine_version(), self.keys.engine_leader()
        for _ in range(5):
            kv = await self._get(version_key)
            registered = (
                None if kv is None else codec.decode_engine_version(kv.value, self._where(kv.key))
            )
            if registered is not None and registered > mine:
                return False
            if registered is None or registered < mine:
                guard = (
                    created(version_key, 0)
                    if kv is None
                    else modified(version_key, kv.mod_revision)
                )
                response = await self._txn(
                    [guard], [put(version_key, codec.encode_engine_version(mine))]
                )
                if not response.succeeded:
                    continue  # another engine raised it meanwhile: look again
            leader = await self._get(leader_key)
            if leader is not None:
                theirs = codec.decode_leader_engine_version(leader.value, self._where(leader_key))
                if theirs < mine:
                    # Depose it: its keepalive check and its fenced writes fail.
                    await self._txn(
                        [modified(leader_key, leader.mod_revision)], [delete(leader_key)]
                    )
            return True
        return False

    async def get_leader(self) -> tuple[str, str] | None:
        """(machine id, engine version) of the current leader, if any."""
        key = self.keys.engine_leader()
        kv = await self._get(key)
        return None if kv is None else codec.decode_leader(kv.value, self._where(key))

    async def resign(self, leadership: Leadership) -> None:
        held = self._held(leadership, EtcdLeadership)
        held.mark_lost("resigned")
        await self._revoke(held.lease_id)

    async def apply_schedule(
        self,
        leadership: Leadership,
        changes: Sequence[ScheduleChange],
        reasons: Mapping[str, PlacementReason | None],
        drains: Mapping[str, DrainStatus] | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        held = self._held(leadership, EtcdLeadership)
        if held.lost:
            raise NotLeader(f"leadership of {held.machine_id} is lost: {held.lost_reason}")
        # etcd refuses a txn naming one key twice: the last word on a key wins.
        ops: dict[bytes, Any] = {}
        # Drain progress first: a move is recorded no later than the eviction it
        # makes, so a new leader never starts more moves than the drain allows.
        for machine_id, status in (drains or {}).items():
            key = self.keys.drain_status(machine_id)
            ops[key] = put(key, codec.encode_drain_status(status))
        for change in changes:
            key = self.keys.schedule(change.machine_id, change.name)
            if change.hash is None:
                ops[key] = delete(key)
            else:
                ops[key] = put(key, codec.encode_schedule(change.hash, change.desired))
        for name, reason in reasons.items():
            key = self.keys.reason(name)
            ops[key] = delete(key) if reason is None else put(key, codec.encode_reason(reason))
        leader_key = self.keys.engine_leader()
        fence = [valued(leader_key, held.value), modified(leader_key, held.mod_revision)]
        # The previous pass's events go first: a history stays in order.
        await self.settle_events()
        for batch in batches(list(ops.values())):
            response = await self._txn(fence, batch)
            if not response.succeeded:
                held.mark_lost("fenced write failed: another engine leads")
                raise NotLeader(f"engine on {held.machine_id} is no longer the leader")
        if events:
            # Events follow their causes, fenced the same way, without holding
            # the pass: the next pass (or settle_events) waits for them.
            task = asyncio.get_running_loop().create_task(
                self._write_engine_events(held, fence, events), name="engine-events"
            )
            self._events_task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def settle_events(self) -> None:
        """Wait until the events handed to the last ``apply_schedule`` are written
        (or given up: a failure is logged, the history then misses them)."""
        task, self._events_task = self._events_task, None
        if task is not None:
            await asyncio.wait([task])

    async def _write_engine_events(
        self, held: EtcdLeadership, fence: list[Any], events: Sequence[Event]
    ) -> None:
        """The pass's events in fenced transactions, all sent at once (etcd commits
        them together: about one round trip per pass, not one per 128 events)."""
        try:
            ops = await self.event_ops(events)
            results = await asyncio.gather(
                *(self._txn(fence, batch) for batch in batches(ops)), return_exceptions=True
            )
        except StoreError as exc:
            results = [exc]
        for result in results:
            if isinstance(result, StoreError):
                self.events_failed(result)
                log.warning("engine: %d events not recorded: %s", len(events), result)
                return
            if isinstance(result, BaseException):
                raise result
            if not result.succeeded:
                held.mark_lost("fenced write failed: another engine leads")
                log.warning("engine: events not recorded: no longer the leader")
                return

    async def collect_garbage(self) -> int:
        """Delete unit bodies no job refers to (feature B9); returns how many.

        Jobs and bodies are read at one revision R; the deletion is guarded by
        "every ``job/`` key has mod_revision <= R" (a range compare), so a job
        created or replaced after the read, which might refer to one of these
        bodies, makes the transaction fail and the pass start over instead of
        deleting a body in use. Deleted jobs only remove references: safe.
        """
        jobs_prefix, units_prefix = self.keys.jobs(), self.keys.units()
        deleted = 0
        for _ in range(3):
            (jobs, bodies), read_revision = await self._snapshot(jobs_prefix, units_prefix)
            used = {codec.decode_job(kv.value, self._where(kv.key)).hash for kv in jobs}
            unused = [kv.key for kv in bodies if kv.key[len(units_prefix) :].decode() not in used]
            if not unused:
                return deleted
            guard = modified(jobs_prefix, read_revision + 1, LESS, range_end(jobs_prefix))
            retry = False
            for start in range(0, len(unused), MAX_TXN_OPS):
                chunk = unused[start : start + MAX_TXN_OPS]
                response = await self._txn([guard], [delete(key) for key in chunk])
                if not response.succeeded:
                    retry = True
                    break
                deleted += len(chunk)
            if not retry:
                return deleted
        return deleted
