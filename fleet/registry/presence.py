"""Machine presence and published unit states, on etcd leases (AgentStore).

An agent's ``machine/<id>`` and its ``state/<name>/<id>`` keys hang on one
lease this process keeps alive, so they vanish on etcd's clock when the agent
does; a restarted fleetd can resume the lease it left (feature B8). Also the
agent's reads: its schedule, its dynamic metadata and the global units.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Collection
from typing import Any

from aetcd import rpc

from fleet.core.model import EtcdMember, Job, LostMachine, Machine, UnitState
from fleet.errors import AlreadyExists, InvalidConfig, StoreError
from fleet.ports.registry import MachineLease
from fleet.registry import codec
from fleet.registry.base import RegistryBase
from fleet.registry.keys import Keys
from fleet.registry.leases import EtcdMachineLease, HeldLease
from fleet.registry.ops import created, delete, modified, on_lease, put

log = logging.getLogger(__name__)


class PresenceRegistry(RegistryBase):
    """AgentStore."""

    async def register_machine(self, machine: Machine, ttl: float) -> MachineLease:
        key = self.keys.machine(machine.id)
        asked = time.monotonic()  # etcd's expiry is no earlier than asked + ttl
        lease_id = await self._grant(ttl)
        try:
            response = await self._txn(
                [created(key, 0)],
                [put(key, codec.encode_machine(machine), lease_id), self._seen(machine)],
            )
        except BaseException:
            await self._revoke_quietly(lease_id)
            raise
        if not response.succeeded:
            await self._revoke(lease_id)
            raise AlreadyExists(
                f"machine {machine.id} is already registered by a live fleetd "
                "(duplicate machine id?)"
            )
        lease = EtcdMachineLease(machine.id, lease_id, ttl)
        lease.renewed_at = asked
        self._start_keepalive(lease)
        return lease

    async def resume_machine(
        self, lease_id: int, machine: Machine, ttl: float
    ) -> MachineLease | None:
        """Adopt the presence a previous fleetd of this machine left behind (B8).

        Succeeds only if lease ``lease_id`` is still alive, was granted for
        ``ttl`` and holds ``machine/<id>``: then the machine key is rewritten on
        it, it is refreshed at once and kept alive like a fresh registration,
        so the machine never leaves the cluster. Otherwise None, after revoking
        that lease if it is still alive (the caller proved it is ours, and its
        stale unit states must not outlive it); the caller then registers.
        """
        key = self.keys.machine(machine.id)
        response = await self.connection.call(
            "lease", "LeaseTimeToLive", rpc.LeaseTimeToLiveRequest(ID=lease_id)
        )
        if int(response.TTL) <= 0:
            return None  # expired (etcd answers -1 for an unknown lease)
        if int(response.grantedTTL) != max(1, math.ceil(ttl)):
            log.info("lease %x was granted another TTL: not resuming it", lease_id)
            await self._revoke(lease_id)
            return None
        asked = time.monotonic()
        if await self.connection.keepalive_once(lease_id) <= 0:
            return None
        response = await self._txn(
            [on_lease(key, lease_id)],
            [put(key, codec.encode_machine(machine), lease_id), self._seen(machine)],
        )
        if not response.succeeded:
            await self._revoke(lease_id)
            return None
        lease = EtcdMachineLease(machine.id, lease_id, ttl)
        lease.renewed_at = asked
        self._start_keepalive(lease)
        return lease

    async def update_machine(self, lease: MachineLease, machine: Machine) -> None:
        held = self._held(lease, EtcdMachineLease)
        await self._put_on_lease(held, self.keys.machine(machine.id), codec.encode_machine(machine))
        await self._txn([], [self._seen(machine)])

    async def unregister_machine(self, lease: MachineLease) -> None:
        held = self._held(lease, EtcdMachineLease)
        held.mark_lost("unregistered")
        await self._revoke(held.lease_id)
        # Left on purpose: not lost.
        await self._txn([], [delete(self.keys.machine_seen(held.machine_id))])

    async def list_lost_machines(self) -> list[LostMachine]:
        """Machines that joined and whose presence is gone without leaving on purpose,
        sorted by id (kept by the engine for its ``lost_retention``)."""
        (seen_kvs, machine_kvs), _ = await self._snapshot(
            self.keys.machines_seen(), self.keys.machines()
        )
        present = {self.keys.relative(kv.key).removeprefix("machine/") for kv in machine_kvs}
        lost = []
        for kv in seen_kvs:
            machine, since = codec.decode_seen(kv.value, self._where(kv.key))
            if machine.id not in present:
                lost.append(LostMachine(machine, since))
        return sorted(lost, key=lambda lost: lost.machine.id)

    async def sweep_lost_machines(
        self, present: Collection[str], now: float, retention: float
    ) -> None:
        """Stamp the records of absent machines with ``now`` (the first time they are
        seen absent) and delete those lost for longer than ``retention`` seconds.
        Each write is guarded by the record's revision: a machine registering again
        meanwhile wins."""
        kvs, _ = await self._range(self.keys.machines_seen())
        for kv in kvs:
            machine, since = codec.decode_seen(kv.value, self._where(kv.key))
            if machine.id in present:
                continue
            guard = [modified(kv.key, int(kv.mod_revision))]
            if since is None:
                await self._txn(guard, [put(kv.key, codec.encode_seen(machine, now))])
            elif now - since > retention:
                await self._txn(guard, [delete(kv.key)])

    async def etcd_members(self) -> list[EtcdMember]:
        """etcd's members (from the one in use), each asked for its status."""
        response = await self.connection.call("cluster", "MemberList", rpc.MemberListRequest())
        members = list(response.members)

        async def status(member: Any) -> tuple[Any, str]:
            urls = list(member.clientURLs)
            if not urls:
                return None, "no client URL (not started yet?)"
            try:
                answer = await self.connection.status_of(urls[0])
            except (StoreError, InvalidConfig) as exc:
                return None, str(exc)
            errors = "; ".join(answer.errors)
            return answer, errors

        answers = await asyncio.gather(*(status(m) for m in members))
        leader = next((int(a.leader) for a, _ in answers if a is not None and a.leader), 0)
        found = []
        for member, (answer, error) in zip(members, answers, strict=True):
            found.append(
                EtcdMember(
                    id=f"{int(member.ID):x}",
                    name=str(member.name),
                    client_urls=tuple(member.clientURLs),
                    healthy=answer is not None and not error,
                    leader=int(member.ID) == leader,
                    version=str(answer.version) if answer is not None else "",
                    db_size=int(answer.dbSize) if answer is not None else 0,
                    error=error,
                )
            )
        return sorted(found, key=lambda m: m.name or m.id)

    def _seen(self, machine: Machine) -> Any:
        return put(self.keys.machine_seen(machine.id), codec.encode_seen(machine))

    async def machine_schedule(self, machine_id: str) -> dict[str, Job]:
        kvs, _ = await self._range(self.keys.schedules(machine_id))
        schedule = {}
        for kv in kvs:
            _, name = Keys.parse_schedule_key(self.keys.relative(kv.key))
            schedule[name] = codec.decode_schedule(kv.value, name, self._where(kv.key))
        return schedule

    async def machine_metadata(self, machine_id: str) -> dict[str, str | None]:
        kvs, _ = await self._range(self.keys.machine_metadata_of(machine_id))
        metadata: dict[str, str | None] = {}
        for kv in kvs:
            _, key = Keys.parse_metadata_key(self.keys.relative(kv.key))
            metadata[key] = codec.decode_metadata_value(kv.value, self._where(kv.key))
        return metadata

    async def list_global_units(self) -> dict[str, Job]:
        kvs, _ = await self._range(self.keys.global_units())
        jobs = (codec.decode_job(kv.value, self._where(kv.key)) for kv in kvs)
        return {job.name: job for job in jobs}

    async def publish_unit_state(self, lease: MachineLease, state: UnitState) -> None:
        held = self._held(lease, EtcdMachineLease)
        key = self.keys.state(state.name, state.machine_id)
        await self._put_on_lease(held, key, codec.encode_state(state))

    async def delete_unit_state(self, name: str, machine_id: str) -> None:
        key = self.keys.state(name, machine_id)
        await self.connection.call("kv", "DeleteRange", rpc.DeleteRangeRequest(key=key))

    async def _put_on_lease(self, lease: HeldLease, key: bytes, value: bytes) -> None:
        try:
            await self.connection.call(
                "kv", "Put", rpc.PutRequest(key=key, value=value, lease=lease.lease_id)
            )
        except StoreError as exc:
            if "lease not found" in str(exc):
                lease.mark_lost("lease expired in etcd")
                raise StoreError(f"lease {lease.lease_id:x} is gone: register again") from exc
            raise
