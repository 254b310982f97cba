"""The engine's side of etcd (EngineStore): leadership, fenced schedule
writes and unit body garbage collection.

Leadership is ``engine/leader`` on a lease this process keeps alive; every
engine write is a transaction comparing that key's value and mod_revision,
so a deposed leader cannot write (etcd locks alone are not mutual exclusion).
"""

from __future__ import annotations

import asyncio
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


class LeadershipRegistry(EventsRegistry):
    """EngineStore (its events ride in the fenced schedule writes)."""

    async def campaign(self, machine_id: str, version: str, ttl: float) -> Leadership | None:
        key = self.keys.engine_leader()
        lease_id = await self._grant(ttl)
        value = codec.encode_leader(machine_id, version, lease_id)
        try:
            response = await self._txn([created(key, 0)], [put(key, value, lease_id)])
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
        # Events last: each lands in the transaction of its cause or after it
        # (their keys are unique ids, never one of the keys above). The batches
        # holding schedule writes go one after the other, as ever; the batches
        # holding only events then go at once (etcd commits them together), so
        # events cost about one round trip per pass, not one per 128 of them.
        event_ops = await self.event_ops(events)
        leader_key = self.keys.engine_leader()
        fence = [valued(leader_key, held.value), modified(leader_key, held.mod_revision)]

        async def fenced(batch: list[Any]) -> None:
            try:
                response = await self._txn(fence, batch)
            except StoreError as exc:
                if event_ops:
                    self.events_failed(exc)
                raise
            if not response.succeeded:
                held.mark_lost("fenced write failed: another engine leads")
                raise NotLeader(f"engine on {held.machine_id} is no longer the leader")

        written, trailing = 0, []
        for batch in batches([*ops.values(), *event_ops]):
            if written < len(ops):
                await fenced(batch)
            else:
                trailing.append(batch)
            written += len(batch)
        if len(trailing) == 1:
            await fenced(trailing[0])
        elif trailing:
            results = await asyncio.gather(*map(fenced, trailing), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise next((f for f in failures if isinstance(f, NotLeader)), failures[0])

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
