"""Machine maintenance on etcd: cordons, drain requests and the engine's drain progress.

Owns ``maintenance/<machine-id>/{cordon,drain,drain-status}``. Clients write
the cordon and the drain request; only the fenced engine leader writes the
progress (in :meth:`fleet.registry.leadership.LeadershipRegistry.apply_schedule`).
None of these keys hangs on a lease: a cordon survives fleetd and machine
restarts until it is lifted. Lifting a cordon ends a drain: all three keys go in
one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fleet.core.maintenance import Cordon, DrainRequest, DrainStatus
from fleet.core.model import UnitState
from fleet.errors import StoreError
from fleet.registry import codec
from fleet.registry.base import RegistryBase
from fleet.registry.keys import CORDON, DRAIN, DRAIN_STATUS, Keys, range_end
from fleet.registry.ops import delete, get, modified, put

_RETRIES = 5  # compare-and-set rounds against concurrent writers of one machine


class MaintenanceRegistry(RegistryBase):
    """MaintenanceStore, and the cordons ``list_machines`` overlays."""

    async def set_cordon(self, machine_id: str, cordon: Cordon | None) -> None:
        if cordon is not None:
            await self._txn([], [put(self.keys.cordon(machine_id), codec.encode_cordon(cordon))])
            return
        prefix = self.keys.maintenance(machine_id)
        await self._txn([], [delete(prefix, range_end(prefix))])

    async def request_drain(self, machine_id: str, request: DrainRequest, cordon: Cordon) -> None:
        cordon_key = self.keys.cordon(machine_id)
        drain = put(self.keys.drain(machine_id), codec.encode_drain_request(request))
        for _ in range(_RETRIES):
            kv = await self._get(cordon_key)
            if kv is not None:
                response = await self._txn([modified(cordon_key, kv.mod_revision)], [drain])
            else:
                encoded = codec.encode_cordon(cordon)
                response = await self._txn(
                    [modified(cordon_key, 0)], [put(cordon_key, encoded), drain]
                )
            if response.succeeded:
                return
        raise StoreError(f"the cordon of {machine_id} kept changing; try again")

    async def set_drain_paused(self, machine_id: str, paused: bool) -> bool:
        key = self.keys.drain(machine_id)
        for _ in range(_RETRIES):
            kv = await self._get(key)
            if kv is None:
                return False
            request = codec.decode_drain_request(kv.value, self._where(key))
            if request.paused == paused:
                return True
            value = codec.encode_drain_request(replace(request, paused=paused))
            response = await self._txn([modified(key, kv.mod_revision)], [put(key, value)])
            if response.succeeded:
                return True
        raise StoreError(f"the drain of {machine_id} kept changing; try again")

    async def get_maintenance(
        self, machine_id: str
    ) -> tuple[Cordon | None, DrainRequest | None, DrainStatus | None]:
        kvs, _ = await self._range(self.keys.maintenance(machine_id))
        cordon, request, status = None, None, None
        for kv in kvs:
            _, kind = Keys.parse_maintenance_key(self.keys.relative(kv.key))
            where = self._where(kv.key)
            if kind == CORDON:
                cordon = codec.decode_cordon(kv.value, where)
            elif kind == DRAIN:
                request = codec.decode_drain_request(kv.value, where)
            elif kind == DRAIN_STATUS:
                status = codec.decode_drain_status(kv.value, where)
        return cordon, request, status

    async def list_unit_states_of(self, names: Sequence[str]) -> list[UnitState]:
        if not names:
            return []
        ops: list[Any] = []
        for name in sorted(set(names)):
            prefix = self.keys.states(name)
            ops.append(get(prefix, range_end(prefix)))
        states: list[UnitState] = []
        for start in range(0, len(ops), 64):
            response = await self._txn([], ops[start : start + 64])
            for item in response.responses:
                for kv in item.response_range.kvs:
                    name, machine_id = Keys.parse_state_key(self.keys.relative(kv.key))
                    states.append(
                        codec.decode_state(kv.value, name, machine_id, self._where(kv.key))
                    )
        return sorted(states, key=lambda s: (s.name, s.machine_id))


def cordons_of(keys: Keys, kvs: Sequence[Any]) -> dict[str, str]:
    """machine id -> cordon reason, from a range over ``maintenance/``."""
    out: dict[str, str] = {}
    for kv in kvs:
        machine_id, kind = Keys.parse_maintenance_key(keys.relative(kv.key))
        if kind == CORDON:
            where = kv.key.decode(errors="replace")
            out[machine_id] = codec.decode_cordon(kv.value, where).reason
    return out
