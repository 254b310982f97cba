"""The registry's foundation: one etcd connection, one key prefix, and the
reads, transactions and lease tasks every store module is built from.

Store modules (units, presence, leadership, watch) subclass
:class:`RegistryBase`; :class:`fleet.registry.etcd.EtcdRegistry` combines them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from aetcd import rpc

from fleet.errors import StoreCompacted, StoreError
from fleet.registry.client import EtcdConnection
from fleet.registry.keys import Keys, range_end
from fleet.registry.leases import Check, HeldLease, keep_alive

_L = TypeVar("_L", bound=HeldLease)

PAGE = 1000  # keys per Range page: bounded messages however big the cluster grows


class RegistryBase:
    def __init__(self, connection: EtcdConnection, prefix: str) -> None:
        self.connection = connection
        self.keys = Keys(prefix)
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop every keepalive task (leases then expire on etcd's clock) and
        close the channel."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.connection.close()

    @property
    def endpoint(self) -> str:
        """The endpoint currently in use."""
        return self.connection.url

    # --- reads and transactions ---------------------------------------------------

    async def _txn(self, compare: Sequence[Any], success: Sequence[Any]) -> Any:
        return await self.connection.call(
            "kv", "Txn", rpc.TxnRequest(compare=compare, success=success, failure=[])
        )

    async def _get(self, key: bytes) -> Any | None:
        response = await self.connection.call("kv", "Range", rpc.RangeRequest(key=key))
        return response.kvs[0] if response.kvs else None

    async def _range(self, prefix: bytes, revision: int = 0) -> tuple[list[Any], int]:
        """Every key under ``prefix`` at one revision, read in pages."""
        end = range_end(prefix)
        start, kvs = prefix, []
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=PAGE, revision=revision)
            response = await self.connection.call("kv", "Range", request)
            revision = revision or int(response.header.revision)
            kvs.extend(response.kvs)
            if not response.more or not response.kvs:
                return kvs, revision
            start = response.kvs[-1].key + b"\x00"

    async def _snapshot(self, *prefixes: bytes, revision: int = 0) -> tuple[list[list[Any]], int]:
        """Several prefixes read at one revision (the current one when 0): a
        consistent picture."""
        first, revision = await self._range(prefixes[0], revision)
        rest = [(await self._range(p, revision))[0] for p in prefixes[1:]]
        return [first, *rest], revision

    async def pin_revision(self, revision: int = 0) -> int:
        """A revision to read a consistent listing at: the current one (0), or
        ``revision`` once etcd confirmed it can still be read. StoreCompacted if
        it was compacted away, or is later than anything this etcd holds (a token
        from another cluster, or from before a restore)."""
        # One key's count at that revision: etcd checks the revision, reads nothing.
        request = rpc.RangeRequest(key=self.keys.prefix, revision=revision, count_only=True)
        try:
            response = await self.connection.call("kv", "Range", request)
        except StoreCompacted:
            raise
        except StoreError as exc:
            if revision and "future revision" in str(exc):
                raise StoreCompacted(f"revision {revision} is not in this etcd") from exc
            raise
        return revision or int(response.header.revision)

    @staticmethod
    def _where(key: bytes) -> str:
        return key.decode(errors="replace")

    # --- leases -------------------------------------------------------------------

    async def _grant(self, ttl: float) -> int:
        # etcd leases have whole-second TTLs; rounding up never shortens one.
        seconds = max(1, math.ceil(ttl))
        response = await self.connection.call(
            "lease", "LeaseGrant", rpc.LeaseGrantRequest(TTL=seconds)
        )
        if response.error:
            raise StoreError(f"etcd refused a lease: {response.error}")
        return int(response.ID)

    async def _revoke(self, lease_id: int) -> None:
        try:
            await self.connection.call("lease", "LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease_id))
        except StoreError as exc:
            if "not found" not in str(exc):  # already expired: the goal is reached
                raise

    async def _revoke_quietly(self, lease_id: int) -> None:
        with contextlib.suppress(StoreError):
            await self._revoke(lease_id)

    def _start_keepalive(self, lease: HeldLease, check: Check | None = None) -> None:
        task = asyncio.get_running_loop().create_task(
            keep_alive(lease, self.connection.keepalive_once, check),
            name=f"etcd-keepalive-{lease.lease_id:x}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _held(lease: object, kind: type[_L]) -> _L:
        if not isinstance(lease, kind):
            raise TypeError(f"{lease!r} was not issued by an EtcdRegistry")
        return lease
