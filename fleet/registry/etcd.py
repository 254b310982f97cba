"""EtcdRegistry: every registry port of :mod:`fleet.ports`, on etcd v3.

It owns the cluster's shared state as laid out by :mod:`fleet.registry.keys`:
unit bodies and jobs (one transaction each), the engine's fenced schedule
writes, machine presence and unit states on etcd leases whose keepalive tasks
it owns, and resumable watches. Multi-key changes are single transactions;
engine writes compare the leader key's value and mod_revision so a deposed
leader cannot write (etcd locks alone are not mutual exclusion). Time comes
only from the event loop; lease expiry is etcd's, never a client clock's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from aetcd import rpc

from fleet.core.model import DesiredState, Job, Machine, UnitState
from fleet.core.requirements import parse_requirements
from fleet.core.unitfile import UnitFile
from fleet.errors import (
    AlreadyExists,
    NotFound,
    NotLeader,
    StoreError,
    StoreUnavailable,
)
from fleet.ports import EventKind, Leadership, MachineLease, ScheduleChange, WatchEvent
from fleet.registry import codec
from fleet.registry.client import EtcdConnection, parse_endpoints
from fleet.registry.keys import DEFAULT_PREFIX, Keys, range_end

if TYPE_CHECKING:  # prometheus_client is not imported by fleetctl's etcd driver
    from fleet.metrics import FleetMetrics

log = logging.getLogger(__name__)
_L = TypeVar("_L", bound="_HeldLease")

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
_MAX_TXN_BYTES = 1024 * 1024  # under etcd's default 1.5 MiB --max-request-bytes
_PAGE = 1000  # keys per Range page: bounded messages however big the cluster grows
_WATCH_BACKOFF_MIN = 0.1
_WATCH_BACKOFF_MAX = 2.0
_EQUAL = rpc.Compare.EQUAL
_GREATER = rpc.Compare.GREATER
_LESS = rpc.Compare.LESS


# --- request builders -----------------------------------------------------------


def _put(key: bytes, value: bytes, lease: int = 0) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def _delete(key: bytes, end: bytes = b"") -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, range_end=end))


def _get(key: bytes, end: bytes = b"") -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key, range_end=end))


def _compare(key: bytes, target: str, result: int, value: Any, end: bytes = b"") -> Any:
    kwargs: dict[str, Any] = {target: value}
    return rpc.Compare(
        key=key,
        range_end=end,
        result=result,
        target=getattr(rpc.Compare, target.upper().replace("_REVISION", "")),
        **kwargs,
    )


def _created(key: bytes, revision: int, result: int = _EQUAL) -> Any:
    return _compare(key, "create_revision", result, revision)


def _modified(key: bytes, revision: int, result: int = _EQUAL, end: bytes = b"") -> Any:
    return _compare(key, "mod_revision", result, revision, end)


def _valued(key: bytes, value: bytes) -> Any:
    return _compare(key, "value", _EQUAL, value)


# --- global units ---------------------------------------------------------------


def _is_global(name: str, body: str) -> bool:
    """Whether the unit asks to run on every machine (``[X-Fleet] Global=``).

    Bodies reach the registry already validated, so a parse error here is a
    caller's bug and propagates (InvalidUnitFile / InvalidRequirements).
    """
    return parse_requirements(name, UnitFile.parse(body)).is_global


# --- held leases ----------------------------------------------------------------


class _HeldLease:
    """An etcd lease this process keeps alive; ``lost`` is final."""

    def __init__(self, lease_id: int, ttl: float) -> None:
        self.lease_id = lease_id
        self.ttl = ttl
        self.lost_reason = ""
        self._lost = asyncio.Event()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    async def wait_lost(self) -> str:
        """Block until the lease is lost; returns why."""
        await self._lost.wait()
        return self.lost_reason

    def mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self.lost_reason = reason
            self._lost.set()


class EtcdLeadership(_HeldLease):
    """The engine's term: writes are fenced on ``engine/leader`` holding exactly
    ``value`` at ``mod_revision``."""

    def __init__(
        self,
        machine_id: str,
        *,
        version: str,
        lease_id: int,
        ttl: float,
        value: bytes,
        revision: int,
    ) -> None:
        super().__init__(lease_id, ttl)
        self.machine_id = machine_id
        self.version = version
        self.value = value
        self.mod_revision = revision


class EtcdMachineLease(_HeldLease):
    """An agent's presence: ``machine/<id>`` and its unit states hang on it."""

    def __init__(self, machine_id: str, lease_id: int, ttl: float) -> None:
        super().__init__(lease_id, ttl)
        self.machine_id = machine_id


# --- the registry ---------------------------------------------------------------


class EtcdRegistry:
    """UnitStore, ClusterView, Watchable, EngineStore and AgentStore on etcd v3."""

    def __init__(self, connection: EtcdConnection, prefix: str) -> None:
        self._conn = connection
        self.keys = Keys(prefix)
        self._tasks: set[asyncio.Task[None]] = set()
        # Unit states decoded by the last list_unit_states, by key, with the raw
        # value they came from: the API reads every state for each page of
        # GET /state, so 1,000 states would be decoded 11 times per list-units.
        self._decoded_states: dict[bytes, tuple[bytes, UnitState]] = {}

    @classmethod
    async def connect(
        cls,
        endpoints: Sequence[str],
        prefix: str = DEFAULT_PREFIX,
        *,
        request_timeout: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        metrics: FleetMetrics | None = None,
    ) -> EtcdRegistry:
        """Connect to the first endpoint that answers within ``request_timeout``;
        StoreUnavailable naming every endpoint tried otherwise. With ``metrics``
        every unary etcd call is counted and timed (fleet_registry_operation_*)."""
        connection = EtcdConnection(
            parse_endpoints(endpoints),
            request_timeout=request_timeout,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            metrics=metrics,
        )
        registry = cls(connection, prefix)
        await connection.connect()
        return registry

    async def close(self) -> None:
        """Stop every keepalive task (leases then expire on etcd's clock) and
        close the channel."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._conn.close()

    async def __aenter__(self) -> EtcdRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def endpoint(self) -> str:
        """The endpoint currently in use."""
        return self._conn.url

    # --- low-level helpers ------------------------------------------------------

    async def _txn(self, compare: Sequence[Any], success: Sequence[Any]) -> Any:
        return await self._conn.call(
            "kv", "Txn", rpc.TxnRequest(compare=compare, success=success, failure=[])
        )

    async def _get(self, key: bytes) -> Any | None:
        response = await self._conn.call("kv", "Range", rpc.RangeRequest(key=key))
        return response.kvs[0] if response.kvs else None

    async def _range(self, prefix: bytes, revision: int = 0) -> tuple[list[Any], int]:
        """Every key under ``prefix`` at one revision, read in pages."""
        end = range_end(prefix)
        start, kvs = prefix, []
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=_PAGE, revision=revision)
            response = await self._conn.call("kv", "Range", request)
            revision = revision or int(response.header.revision)
            kvs.extend(response.kvs)
            if not response.more or not response.kvs:
                return kvs, revision
            start = response.kvs[-1].key + b"\x00"

    async def _snapshot(self, *prefixes: bytes) -> tuple[list[list[Any]], int]:
        """Several prefixes read at one revision: a consistent picture."""
        first, revision = await self._range(prefixes[0])
        rest = [(await self._range(p, revision))[0] for p in prefixes[1:]]
        return [first, *rest], revision

    def _where(self, key: bytes) -> str:
        return key.decode(errors="replace")

    def revision_of(self, response: Any) -> int:
        return int(response.header.revision)

    async def current_revision(self) -> int:
        response = await self._conn.call(
            "kv", "Range", rpc.RangeRequest(key=self.keys.prefix, count_only=True)
        )
        return int(response.header.revision)

    async def compact(self, revision: int) -> None:
        """Maintenance: drop history before ``revision`` (tests use it to force
        StoreCompacted on a watch)."""
        await self._conn.call(
            "kv", "Compact", rpc.CompactionRequest(revision=revision, physical=True)
        )

    # --- UnitStore ---------------------------------------------------------------

    def _unit_ops(self, name: str, body: str, hash: str, desired: DesiredState) -> list[Any]:
        job = codec.encode_job(Job(name, hash, desired))
        ops = [_put(self.keys.unit(hash), codec.encode_body(body)), _put(self.keys.job(name), job)]
        if _is_global(name, body):
            ops.append(_put(self.keys.global_unit(name), job))
        else:
            ops.append(_delete(self.keys.global_unit(name)))
        return ops

    async def create_unit(self, name: str, body: str, hash: str, desired: DesiredState) -> None:
        job_key = self.keys.job(name)
        ops = self._unit_ops(name, body, hash, desired)
        response = await self._txn([_created(job_key, 0)], ops)
        if not response.succeeded:
            raise AlreadyExists(f"unit {name} already exists")

    async def replace_unit(self, name: str, body: str, hash: str, desired: DesiredState) -> None:
        await self._txn([], self._unit_ops(name, body, hash, desired))

    async def get_job(self, name: str) -> Job | None:
        key = self.keys.job(name)
        kv = await self._get(key)
        return None if kv is None else codec.decode_job(kv.value, self._where(key))

    async def list_jobs(self) -> list[Job]:
        kvs, _ = await self._range(self.keys.jobs())
        return sorted(
            (codec.decode_job(kv.value, self._where(kv.key)) for kv in kvs), key=lambda j: j.name
        )

    async def get_unit_body(self, hash: str) -> str | None:
        key = self.keys.unit(hash)
        kv = await self._get(key)
        return None if kv is None else codec.decode_body(kv.value, self._where(key))

    async def get_unit_bodies(self, hashes: Sequence[str]) -> dict[str, str]:
        wanted = sorted(set(hashes))
        bodies: dict[str, str] = {}
        for start in range(0, len(wanted), MAX_TXN_OPS):
            chunk = wanted[start : start + MAX_TXN_OPS]
            response = await self._txn([], [_get(self.keys.unit(h)) for h in chunk])
            for hash, item in zip(chunk, response.responses, strict=True):
                for kv in item.response_range.kvs:
                    bodies[hash] = codec.decode_body(kv.value, self._where(kv.key))
        return bodies

    async def set_desired_state(self, name: str, desired: DesiredState) -> None:
        job_key, global_key = self.keys.job(name), self.keys.global_unit(name)
        for _ in range(3):
            read = await self._txn([], [_get(job_key), _get(global_key)])
            job_kvs = read.responses[0].response_range.kvs
            if not job_kvs:
                raise NotFound(f"unit {name} does not exist")
            job = codec.decode_job(job_kvs[0].value, self._where(job_key))
            value = codec.encode_job(Job(job.name, job.hash, desired))
            ops = [_put(job_key, value)]
            if read.responses[1].response_range.kvs:
                ops.append(_put(global_key, value))
            response = await self._txn([_modified(job_key, job_kvs[0].mod_revision)], ops)
            if response.succeeded:
                return
        raise StoreError(f"unit {name} kept changing while its desired state was being set")

    async def destroy_unit(self, name: str) -> bool:
        job_key = self.keys.job(name)
        response = await self._txn(
            [_created(job_key, 0, _GREATER)],
            [
                _delete(job_key),
                _delete(self.keys.reason(name)),
                _delete(self.keys.global_unit(name)),
            ],
        )
        return bool(response.succeeded)

    async def collect_garbage(self) -> int:
        """Delete unit bodies no job refers to (feature B9); returns how many.

        Jobs and bodies are read at one revision R; the deletion is guarded by
        "every ``job/`` key has mod_revision <= R" (a range compare), so a job
        created or replaced after the read, which might refer to one of these
        bodies, makes the transaction fail and the pass start over instead of
        deleting a body in use. Deleted jobs only remove references: safe.
        """
        deleted = 0
        for _ in range(3):
            (jobs, bodies), read_revision = await self._snapshot(
                self.keys.jobs(), self.keys.units()
            )
            used = {codec.decode_job(kv.value, self._where(kv.key)).hash for kv in jobs}
            unused = [
                kv.key for kv in bodies if kv.key[len(self.keys.units()) :].decode() not in used
            ]
            if not unused:
                return deleted
            guard = _modified(
                self.keys.jobs(), read_revision + 1, _LESS, range_end(self.keys.jobs())
            )
            retry = False
            for start in range(0, len(unused), MAX_TXN_OPS):
                chunk = unused[start : start + MAX_TXN_OPS]
                response = await self._txn([guard], [_delete(key) for key in chunk])
                if not response.succeeded:
                    retry = True
                    break
                deleted += len(chunk)
            if not retry:
                return deleted
        return deleted

    # --- ClusterView -------------------------------------------------------------

    async def list_schedule(self) -> dict[str, str]:
        kvs, _ = await self._range(self.keys.schedules())
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

    async def list_unit_states(self) -> list[UnitState]:
        kvs, _ = await self._range(self.keys.states())
        decoded: dict[bytes, tuple[bytes, UnitState]] = {}
        for kv in kvs:
            known = self._decoded_states.get(kv.key)
            if known is None or known[0] != kv.value:
                name, machine_id = Keys.parse_state_key(self.keys.relative(kv.key))
                state = codec.decode_state(kv.value, name, machine_id, self._where(kv.key))
                known = (kv.value, state)
            decoded[kv.key] = known
        self._decoded_states = decoded  # keys that are gone are forgotten
        return sorted((s for _, s in decoded.values()), key=lambda s: (s.name, s.machine_id))

    async def list_machines(self) -> list[Machine]:
        (machine_kvs, metadata_kvs), _ = await self._snapshot(
            self.keys.machines(), self.keys.machine_metadata_all()
        )
        dynamic: dict[str, dict[str, str | None]] = {}
        for kv in metadata_kvs:
            machine_id, key = Keys.parse_metadata_key(self.keys.relative(kv.key))
            value = codec.decode_metadata_value(kv.value, self._where(kv.key))
            dynamic.setdefault(machine_id, {})[key] = value
        machines = []
        for kv in machine_kvs:
            machine = codec.decode_machine(kv.value, self._where(kv.key))
            machines.append(machine.overlaid(dynamic.get(machine.id, {})))
        return sorted(machines, key=lambda m: m.id)

    async def list_reasons(self) -> dict[str, str]:
        kvs, _ = await self._range(self.keys.reasons())
        return {
            Keys.parse_leaf(self.keys.relative(kv.key), "reason/"): codec.decode_reason(
                kv.value, self._where(kv.key)
            )
            for kv in kvs
        }

    async def set_machine_metadata(self, machine_id: str, key: str, value: str | None) -> None:
        # None is stored as a tombstone, not deleted: like fleet's "" it must
        # also hide a key that comes from the machine's own configuration.
        await self._conn.call(
            "kv",
            "Put",
            rpc.PutRequest(
                key=self.keys.machine_metadata(machine_id, key),
                value=codec.encode_metadata_value(value),
            ),
        )

    # --- Watchable ---------------------------------------------------------------

    async def list_prefix(self, prefix: str) -> tuple[dict[str, bytes], int]:
        kvs, revision = await self._range(self.keys.absolute(prefix))
        return {self.keys.relative(kv.key): bytes(kv.value) for kv in kvs}, revision

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[list[WatchEvent]]:
        """Batches of events under ``prefix`` from ``start_revision`` (0: from now).

        A broken stream is re-created from the last delivered revision + 1 after
        a growing pause (0.1 s to 2 s: no busy loop while etcd is down).
        StoreCompacted propagates: the caller relists.
        """
        key = self.keys.absolute(prefix)
        end = range_end(key)
        next_revision = start_revision
        delay = _WATCH_BACKOFF_MIN
        while True:
            try:
                async with contextlib.aclosing(self._conn.watch(key, end, next_revision)) as stream:
                    async for response in stream:
                        delay = _WATCH_BACKOFF_MIN
                        if response.created:
                            if next_revision <= 0:
                                next_revision = int(response.header.revision) + 1
                            continue
                        events = [self._event(event) for event in response.events]
                        if events:
                            next_revision = events[-1].revision + 1
                            yield events
                        else:  # progress notification: nothing missed up to here
                            next_revision = max(next_revision, int(response.header.revision) + 1)
            except StoreUnavailable as exc:
                log.warning("watch on %s broke (%s); resuming from %d", prefix, exc, next_revision)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _WATCH_BACKOFF_MAX)

    def _event(self, event: Any) -> WatchEvent:
        kind = EventKind.DELETE if event.type == rpc.Event.DELETE else EventKind.PUT
        kv = event.kv
        return WatchEvent(kind, self.keys.relative(kv.key), bytes(kv.value), int(kv.mod_revision))

    # --- leases -------------------------------------------------------------------

    async def _grant(self, ttl: float) -> int:
        # etcd leases have whole-second TTLs; rounding up never shortens one.
        seconds = max(1, math.ceil(ttl))
        response = await self._conn.call("lease", "LeaseGrant", rpc.LeaseGrantRequest(TTL=seconds))
        if response.error:
            raise StoreError(f"etcd refused a lease: {response.error}")
        return int(response.ID)

    async def _revoke(self, lease_id: int) -> None:
        try:
            await self._conn.call("lease", "LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease_id))
        except StoreError as exc:
            if "not found" not in str(exc):  # already expired: the goal is reached
                raise

    def _start_keepalive(
        self, lease: _HeldLease, check: Callable[[], Awaitable[str | None]] | None = None
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._keep_alive(lease, check), name=f"etcd-keepalive-{lease.lease_id:x}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_alive(
        self, lease: _HeldLease, check: Callable[[], Awaitable[str | None]] | None
    ) -> None:
        """Refresh every ttl/3; after a failure retry quickly; give up (lost) once
        no refresh has been acknowledged for a whole TTL."""
        loop = asyncio.get_running_loop()
        interval = lease.ttl / 3
        retry = max(0.05, lease.ttl / 10)
        last_sent_ok = loop.time()
        pause = interval
        try:
            while not lease.lost:
                await asyncio.sleep(pause)
                sent = loop.time()
                try:
                    remaining = await self._conn.keepalive_once(lease.lease_id)
                    problem = None if check is None else await check()
                except StoreError as exc:
                    if loop.time() - last_sent_ok >= lease.ttl:
                        lease.mark_lost(f"lease not refreshed for {lease.ttl:g}s: {exc}")
                    pause = retry
                    continue
                if remaining <= 0:
                    lease.mark_lost("lease expired in etcd")
                elif problem is not None:
                    lease.mark_lost(problem)
                last_sent_ok, pause = sent, interval
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Never die silently: the owner learns it through ``lost``.
            log.exception("keepalive of lease %x crashed", lease.lease_id)
            lease.mark_lost(f"keepalive crashed: {exc!r}")
        finally:
            if lease.lost:
                log.warning("lease %x lost: %s", lease.lease_id, lease.lost_reason)

    # --- EngineStore -------------------------------------------------------------

    async def campaign(self, machine_id: str, version: str, ttl: float) -> Leadership | None:
        key = self.keys.engine_leader()
        lease_id = await self._grant(ttl)
        value = codec.encode_leader(machine_id, version, lease_id)
        try:
            response = await self._txn([_created(key, 0)], [_put(key, value, lease_id)])
        except BaseException:
            with contextlib.suppress(StoreError):
                await self._revoke(lease_id)
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
        reasons: Mapping[str, str | None],
    ) -> None:
        held = self._held(leadership, EtcdLeadership)
        if held.lost:
            raise NotLeader(f"leadership of {held.machine_id} is lost: {held.lost_reason}")
        # etcd refuses a txn naming one key twice: the last word on a key wins.
        ops: dict[bytes, Any] = {}
        for change in changes:
            key = self.keys.schedule(change.machine_id, change.name)
            if change.hash is None:
                ops[key] = _delete(key)
            else:
                ops[key] = _put(key, codec.encode_schedule(change.hash, change.desired))
        for name, reason in reasons.items():
            key = self.keys.reason(name)
            ops[key] = _delete(key) if reason is None else _put(key, codec.encode_reason(reason))
        leader_key = self.keys.engine_leader()
        fence = [_valued(leader_key, held.value), _modified(leader_key, held.mod_revision)]
        for batch in _batches(list(ops.values())):
            response = await self._txn(fence, batch)
            if not response.succeeded:
                held.mark_lost("fenced write failed: another engine leads")
                raise NotLeader(f"engine on {held.machine_id} is no longer the leader")

    # --- AgentStore --------------------------------------------------------------

    async def register_machine(self, machine: Machine, ttl: float) -> MachineLease:
        key = self.keys.machine(machine.id)
        lease_id = await self._grant(ttl)
        try:
            response = await self._txn(
                [_created(key, 0)], [_put(key, codec.encode_machine(machine), lease_id)]
            )
        except BaseException:
            with contextlib.suppress(StoreError):
                await self._revoke(lease_id)
            raise
        if not response.succeeded:
            await self._revoke(lease_id)
            raise AlreadyExists(
                f"machine {machine.id} is already registered by a live fleetd "
                "(duplicate machine id?)"
            )
        lease = EtcdMachineLease(machine.id, lease_id, ttl)
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
        response = await self._conn.call(
            "lease", "LeaseTimeToLive", rpc.LeaseTimeToLiveRequest(ID=lease_id)
        )
        if int(response.TTL) <= 0:
            return None  # expired (etcd answers -1 for an unknown lease)
        if int(response.grantedTTL) != max(1, math.ceil(ttl)):
            log.info("lease %x was granted another TTL: not resuming it", lease_id)
            await self._revoke(lease_id)
            return None
        if await self._conn.keepalive_once(lease_id) <= 0:
            return None
        response = await self._txn(
            [_compare(key, "lease", _EQUAL, lease_id)],
            [_put(key, codec.encode_machine(machine), lease_id)],
        )
        if not response.succeeded:
            await self._revoke(lease_id)
            return None
        lease = EtcdMachineLease(machine.id, lease_id, ttl)
        self._start_keepalive(lease)
        return lease

    async def update_machine(self, lease: MachineLease, machine: Machine) -> None:
        held = self._held(lease, EtcdMachineLease)
        await self._put_on_lease(held, self.keys.machine(machine.id), codec.encode_machine(machine))

    async def unregister_machine(self, lease: MachineLease) -> None:
        held = self._held(lease, EtcdMachineLease)
        held.mark_lost("unregistered")
        await self._revoke(held.lease_id)

    async def machine_schedule(self, machine_id: str) -> dict[str, Job]:
        kvs, _ = await self._range(self.keys.schedules(machine_id))
        schedule = {}
        for kv in kvs:
            _, name = Keys.parse_schedule_key(self.keys.relative(kv.key))
            schedule[name] = codec.decode_schedule(kv.value, name, self._where(kv.key))
        return schedule

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
        await self._conn.call("kv", "DeleteRange", rpc.DeleteRangeRequest(key=key))

    async def _put_on_lease(self, lease: _HeldLease, key: bytes, value: bytes) -> None:
        try:
            await self._conn.call(
                "kv", "Put", rpc.PutRequest(key=key, value=value, lease=lease.lease_id)
            )
        except StoreError as exc:
            if "lease not found" in str(exc):
                lease.mark_lost("lease expired in etcd")
                raise StoreError(f"lease {lease.lease_id:x} is gone: register again") from exc
            raise

    @staticmethod
    def _held(lease: object, kind: type[_L]) -> _L:
        if not isinstance(lease, kind):
            raise TypeError(f"{lease!r} was not issued by an EtcdRegistry")
        return lease


def _batches(ops: list[Any]) -> list[list[Any]]:
    """Split ops into transactions under etcd's op-count and request-size limits."""
    batches: list[list[Any]] = []
    current: list[Any] = []
    size = 0
    for op in ops:
        op_size = op.ByteSize()
        if current and (len(current) >= MAX_TXN_OPS or size + op_size > _MAX_TXN_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(op)
        size += op_size
    if current:
        batches.append(current)
    return batches
