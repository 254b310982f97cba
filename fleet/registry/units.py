"""Unit bodies, desired states and the cluster read side, on etcd.

Owns ``unit/<sha1>``, ``job/<name>`` and its ``global/<name>`` mirror (each
change one transaction), the unplaceable reasons read, and the listings the
API and fleetctl's etcd driver build their views from. Whether a unit is
global is the caller's decision, made from requirements it already parsed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aetcd import rpc

from fleet.core.model import DesiredState, Job, Machine, PlacementReason, UnitState
from fleet.errors import AlreadyExists, NotFound, StoreError
from fleet.registry import codec
from fleet.registry.base import RegistryBase
from fleet.registry.keys import REASON, Keys
from fleet.registry.maintenance import cordons_of
from fleet.registry.ops import GREATER, MAX_TXN_OPS, created, delete, get, modified, put

# A unit takes a compare and up to two puts: 40 stay well under etcd's 128 ops.
_UNITS_PER_TXN = 40


class UnitRegistry(RegistryBase):
    """UnitStore and ClusterView."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Unit states decoded by the last list_unit_states, by key, with the raw
        # value they came from: a listing decodes only the states that changed.
        self._decoded_states: dict[bytes, tuple[bytes, UnitState]] = {}

    # --- UnitStore -------------------------------------------------------------------

    def _unit_ops(
        self, name: str, body: str, hash: str, desired: DesiredState, is_global: bool
    ) -> list[Any]:
        job = codec.encode_job(Job(name, hash, desired))
        global_key = self.keys.global_unit(name)
        return [
            put(self.keys.unit(hash), codec.encode_body(body)),
            put(self.keys.job(name), job),
            put(global_key, job) if is_global else delete(global_key),
        ]

    async def create_unit(
        self, name: str, body: str, hash: str, desired: DesiredState, is_global: bool
    ) -> None:
        ops = self._unit_ops(name, body, hash, desired, is_global)
        response = await self._txn([created(self.keys.job(name), 0)], ops)
        if not response.succeeded:
            raise AlreadyExists(f"unit {name} already exists")

    async def replace_unit(
        self, name: str, body: str, hash: str, desired: DesiredState, is_global: bool
    ) -> None:
        await self._txn([], self._unit_ops(name, body, hash, desired, is_global))

    async def get_job(self, name: str) -> Job | None:
        key = self.keys.job(name)
        kv = await self._get(key)
        return None if kv is None else codec.decode_job(kv.value, self._where(key))

    async def list_jobs(self, revision: int = 0) -> list[Job]:
        kvs, _ = await self._range(self.keys.jobs(), revision)
        return sorted(
            (codec.decode_job(kv.value, self._where(kv.key)) for kv in kvs), key=lambda j: j.name
        )

    async def get_unit_body(self, hash: str) -> str | None:
        key = self.keys.unit(hash)
        kv = await self._get(key)
        return None if kv is None else codec.decode_body(kv.value, self._where(key))

    async def get_unit_bodies(self, hashes: Sequence[str], revision: int = 0) -> dict[str, str]:
        wanted = sorted(set(hashes))
        bodies: dict[str, str] = {}
        for start in range(0, len(wanted), MAX_TXN_OPS):
            chunk = wanted[start : start + MAX_TXN_OPS]
            response = await self._txn(
                [], [get(self.keys.unit(h), revision=revision) for h in chunk]
            )
            for hash, item in zip(chunk, response.responses, strict=True):
                for kv in item.response_range.kvs:
                    bodies[hash] = codec.decode_body(kv.value, self._where(kv.key))
        return bodies

    async def set_desired_state(self, name: str, desired: DesiredState) -> None:
        job_key, global_key = self.keys.job(name), self.keys.global_unit(name)
        for _ in range(3):
            read = await self._txn([], [get(job_key), get(global_key)])
            job_kvs = read.responses[0].response_range.kvs
            if not job_kvs:
                raise NotFound(f"unit {name} does not exist")
            job = codec.decode_job(job_kvs[0].value, self._where(job_key))
            value = codec.encode_job(Job(job.name, job.hash, desired))
            ops = [put(job_key, value)]
            if read.responses[1].response_range.kvs:
                ops.append(put(global_key, value))
            response = await self._txn([modified(job_key, job_kvs[0].mod_revision)], ops)
            if response.succeeded:
                return
        raise StoreError(f"unit {name} kept changing while its desired state was being set")

    async def set_desired_states(self, desired: Mapping[str, DesiredState]) -> None:
        """Several units' desired states in one transaction (compare-and-set on each
        job), so the engine never plans with half of them written. Batches of
        _UNITS_PER_TXN units: beyond that each batch is atomic on its own."""
        names = sorted(desired)
        for start in range(0, len(names), _UNITS_PER_TXN):
            await self._set_desired_batch(
                {n: desired[n] for n in names[start : start + _UNITS_PER_TXN]}
            )

    async def _set_desired_batch(self, desired: Mapping[str, DesiredState]) -> None:
        for _ in range(3):
            reads = []
            for name in desired:
                reads += [get(self.keys.job(name)), get(self.keys.global_unit(name))]
            read = await self._txn([], reads)
            compares, ops = [], []
            for index, (name, state) in enumerate(desired.items()):
                job_kvs = read.responses[2 * index].response_range.kvs
                if not job_kvs:
                    raise NotFound(f"unit {name} does not exist")
                job_key = self.keys.job(name)
                job = codec.decode_job(job_kvs[0].value, self._where(job_key))
                value = codec.encode_job(Job(job.name, job.hash, state))
                compares.append(modified(job_key, job_kvs[0].mod_revision))
                ops.append(put(job_key, value))
                if read.responses[2 * index + 1].response_range.kvs:
                    ops.append(put(self.keys.global_unit(name), value))
            if (await self._txn(compares, ops)).succeeded:
                return
        raise StoreError("units kept changing while their desired states were being set")

    async def destroy_unit(self, name: str) -> bool:
        job_key = self.keys.job(name)
        response = await self._txn(
            [created(job_key, 0, GREATER)],
            [
                delete(job_key),
                delete(self.keys.reason(name)),
                delete(self.keys.global_unit(name)),
            ],
        )
        return bool(response.succeeded)

    # --- ClusterView -----------------------------------------------------------------

    async def list_schedule(self, revision: int = 0) -> dict[str, str]:
        kvs, _ = await self._range(self.keys.schedules(), revision)
        schedule: dict[str, str] = {}
        for kv in kvs:
            machine_id, name = Keys.parse_schedule_key(self.keys.relative(kv.key))
            schedule[name] = machine_id
        return schedule

    async def list_schedule_entries(self) -> dict[str, dict[str, Job]]:
        """machine id -> unit name -> Job(name, hash, desired) for every placement."""
        kvs, _ = await self._range(self.keys.schedules())
        entries: dict[str, dict[str, Job]] = {}
        for kv in kvs:
            machine_id, name = Keys.parse_schedule_key(self.keys.relative(kv.key))
            job = codec.decode_schedule(kv.value, name, self._where(kv.key))
            entries.setdefault(machine_id, {})[name] = job
        return entries

    async def list_unit_states(self, revision: int = 0) -> list[UnitState]:
        kvs, _ = await self._range(self.keys.states(), revision)
        decoded: dict[bytes, tuple[bytes, UnitState]] = {}
        for kv in kvs:
            known = self._decoded_states.get(kv.key)
            if known is None or known[0] != kv.value:
                name, machine_id = Keys.parse_state_key(self.keys.relative(kv.key))
                state = codec.decode_state(kv.value, name, machine_id, self._where(kv.key))
                known = (kv.value, state)
            decoded[kv.key] = known
        if not revision:  # an older listing must not evict what the current one decoded
            self._decoded_states = decoded  # keys that are gone are forgotten
        return sorted((s for _, s in decoded.values()), key=lambda s: (s.name, s.machine_id))

    async def list_machines(self, revision: int = 0) -> list[Machine]:
        (machine_kvs, metadata_kvs, maintenance_kvs), _ = await self._snapshot(
            self.keys.machines(),
            self.keys.machine_metadata_all(),
            self.keys.maintenance(),
            revision=revision,
        )
        cordons = cordons_of(self.keys, maintenance_kvs)
        dynamic: dict[str, dict[str, str | None]] = {}
        for kv in metadata_kvs:
            machine_id, key = Keys.parse_metadata_key(self.keys.relative(kv.key))
            value = codec.decode_metadata_value(kv.value, self._where(kv.key))
            dynamic.setdefault(machine_id, {})[key] = value
        machines = []
        for kv in machine_kvs:
            machine = codec.decode_machine(kv.value, self._where(kv.key))
            overlaid = machine.overlaid(dynamic.get(machine.id, {}))
            machines.append(overlaid.cordoned(cordons.get(machine.id)))
        return sorted(machines, key=lambda m: m.id)

    async def list_reasons(self, revision: int = 0) -> dict[str, PlacementReason]:
        kvs, _ = await self._range(self.keys.reasons(), revision)
        return {
            Keys.parse_leaf(self.keys.relative(kv.key), REASON): codec.decode_reason(
                kv.value, self._where(kv.key)
            )
            for kv in kvs
        }

    async def set_machine_metadata(self, machine_id: str, key: str, value: str | None) -> None:
        # None is stored as a tombstone, not deleted: like fleet's "" it must
        # also hide a key that comes from the machine's own configuration.
        await self.connection.call(
            "kv",
            "Put",
            rpc.PutRequest(
                key=self.keys.machine_metadata(machine_id, key),
                value=codec.encode_metadata_value(value),
            ),
        )
