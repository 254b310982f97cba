"""The etcd v3 connection: endpoints, TLS, auth, deadlines and error translation.

It drives the etcd v3 gRPC API through the protobuf stubs that ``aetcd``
ships (``aetcd.rpc``) rather than ``aetcd.Client``, because ``aetcd.Client``
1.0.0 only opens plaintext channels (``grpc.aio.insecure_channel``: no TLS,
no client certificates), knows a single host, and shares one watch stream
between all watches whose failure handling cancels its own task. Here every
unary RPC carries a deadline of ``request_timeout``, every gRPC failure becomes
a :mod:`fleet.errors` exception, and each watch owns its own stream so closing
one never disturbs another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]
from aetcd import rpc

from fleet.errors import InvalidConfig, StoreCompacted, StoreError, StoreUnavailable
from fleet.registry.endpoints import Endpoint, parse_endpoints

if TYPE_CHECKING:  # prometheus_client is not imported by fleetctl's etcd driver
    from fleet.metrics import FleetMetrics

# parse_endpoints lives in fleet.registry.endpoints; its callers import it from here.
__all__ = ["Endpoint", "EtcdConnection", "parse_endpoints", "translate"]

log = logging.getLogger(__name__)

# A restarted etcd must be usable again within a second or so: gRPC's default
# reconnect backoff grows to two minutes and would keep every RPC failing.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # etcd rejects pings more often than every 5 s (GOAWAY too_many_pings).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)

_UNAVAILABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# etcd's "require leader" request metadata (rpctypes.MetadataRequireLeaderKey):
# a member without a raft leader fails the request with UNAVAILABLE "no leader",
# and ends a watch stream once it loses its leader.
_REQUIRE_LEADER = ("hasleader", "true")


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidConfig(f"cannot read etcd {what} {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        # grpc would only fail later, at the handshake, without naming the file.
        raise InvalidConfig(f"etcd {what} {path} is not a PEM file")
    return data


def _cancelled_by_us() -> bool:
    """Whether the running task is being cancelled (not just a call under it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def translate(exc: grpc.aio.AioRpcError, url: str) -> StoreError:
    """One gRPC failure as the project's error; the caller raises it ``from exc``.

    A call cancelled because the task awaiting it is being cancelled stays a
    cancellation: as a StoreError it would be swallowed by the retry loops of
    watches and presence, and a shutdown would wait for them forever. A call
    cancelled by anything else (its channel, a failover) is an outage.
    """
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.CANCELLED:
        if _cancelled_by_us():
            raise asyncio.CancelledError from exc
        return StoreUnavailable(f"etcd at {url}: call cancelled ({details or 'no reason'})")
    if code in _UNAVAILABLE or (code == grpc.StatusCode.INTERNAL and "from Core" in details):
        # "Internal error from Core": gRPC's own transport failing a call (seen
        # on watch streams while members die), not an answer from etcd.
        return StoreUnavailable(f"cannot reach etcd at {url}: {details or code.name}")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return StoreCompacted(f"etcd at {url}: {details}")
    return StoreError(f"etcd at {url} refused the request ({code.name}): {details}")


@dataclass(eq=False)
class _Member:
    """One endpoint's channel, its stubs, its auth token and its open watches."""

    index: int
    endpoint: Endpoint
    channel: grpc.aio.Channel
    kv: Any
    lease: Any
    maintenance: Any
    watch: Any
    auth: Any
    cluster: Any
    metadata: tuple[tuple[str, str], ...] = (_REQUIRE_LEADER,)
    authenticated: bool = False
    watches: set[Any] = field(default_factory=set)
    moved: set[Any] = field(default_factory=set)


class EtcdConnection:
    """One gRPC channel per endpoint; calls go to the member in use and fail
    over to the next on an outage answer."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        request_timeout: float,
        username: str | None,
        password: str | None,
        ca_file: str | None,
        cert_file: str | None,
        key_file: str | None,
        metrics: FleetMetrics | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise InvalidConfig("etcd username and password must be given together")
        if (cert_file is None) != (key_file is None):
            raise InvalidConfig("etcd cert file and key file must be given together")
        self.endpoints = list(endpoints)
        self.timeout = request_timeout
        self._metrics = metrics
        self._username = username
        self._password = password
        self._ca = _read(ca_file, "CA file")
        self._cert = _read(cert_file, "certificate")
        self._key = _read(key_file, "key")
        self._index = 0
        self._members: list[_Member | None] = [None] * len(self.endpoints)
        self.failovers = 0  # how often calls moved to another member (tests, logs)
        # Keepalives go over a channel of their own: (member index, channel, lease stub).
        self._keepalive: tuple[int, grpc.aio.Channel, Any] | None = None
        self._retired_keepalive: list[tuple[float, grpc.aio.Channel]] = []

    @property
    def url(self) -> str:
        return self.endpoints[self._index].url

    # Stubs of the member in use (``call(stub, ...)`` and tests name them).
    @property
    def kv(self) -> Any:
        return self._member(self._index).kv

    @property
    def lease(self) -> Any:
        return self._member(self._index).lease

    @property
    def maintenance(self) -> Any:
        return self._member(self._index).maintenance

    def _new_channel(
        self, endpoint: Endpoint, extra: tuple[tuple[str, Any], ...] = ()
    ) -> grpc.aio.Channel:
        options = (*_CHANNEL_OPTIONS, *extra)
        if endpoint.tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=self._ca, private_key=self._key, certificate_chain=self._cert
            )
            return grpc.aio.secure_channel(endpoint.target, creds, options=options)
        return grpc.aio.insecure_channel(endpoint.target, options=options)

    def _member(self, index: int) -> _Member:
        member = self._members[index]
        if member is None:
            endpoint = self.endpoints[index]
            channel = self._new_channel(endpoint)
            member = _Member(
                index,
                endpoint,
                channel,
                kv=rpc.KVStub(channel),
                lease=rpc.LeaseStub(channel),
                maintenance=rpc.MaintenanceStub(channel),
                watch=rpc.WatchStub(channel),
                auth=rpc.AuthStub(channel),
                cluster=rpc.ClusterStub(channel),
            )
            self._members[index] = member
        return member

    async def status_of(self, url: str) -> Any:
        """Maintenance.Status of the member at ``url`` over a channel of its own (the
        member may not be the one in use), within the deadline."""
        (endpoint,) = parse_endpoints([url])
        channel = self._new_channel(endpoint)
        try:
            return await rpc.MaintenanceStub(channel).Status(
                rpc.StatusRequest(),
                timeout=self.timeout,
                metadata=self._member(self._index).metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, url) from exc
        finally:
            await channel.close()

    async def _authenticate(self, member: _Member) -> None:
        """Log in on ``member`` (a simple-token login is per member)."""
        if self._username is None:
            member.authenticated = True
            return
        request = rpc.AuthenticateRequest(name=self._username, password=self._password)
        response = await member.auth.Authenticate(
            request, timeout=self.timeout, metadata=(_REQUIRE_LEADER,)
        )
        member.metadata = (("token", response.token), _REQUIRE_LEADER)
        member.authenticated = True

    async def _ready(self) -> _Member:
        """The member in use, logged in; an outage while logging in fails over."""
        member = self._member(self._index)
        if not member.authenticated:
            try:
                await self._authenticate(member)
            except grpc.aio.AioRpcError as exc:
                error = translate(exc, member.endpoint.url)
                if isinstance(error, StoreUnavailable):
                    self._fail_over(member)
                raise error from exc
        return member

    async def connect(self) -> None:
        """Use the first endpoint that answers a linearizable read within the deadline."""
        failures: list[str] = []
        for index, endpoint in enumerate(self.endpoints):
            self._index = index
            member = self._member(index)
            try:
                await self._authenticate(member)
                await member.kv.Range(
                    rpc.RangeRequest(key=b"\x00", count_only=True),
                    timeout=self.timeout,
                    metadata=member.metadata,
                )
            except grpc.aio.AioRpcError as exc:
                failures.append(str(translate(exc, endpoint.url)))
                continue
            return
        self._index = 0
        raise StoreUnavailable("; ".join(failures))

    async def close(self) -> None:
        members = [m for m in self._members if m is not None]
        self._members = [None] * len(self.endpoints)
        for member in members:
            await member.channel.close()
        if self._keepalive is not None:
            await self._keepalive[1].close()
            self._keepalive = None
        await self._close_retired_keepalive_channels(everything=True)

    def _fail_over(self, failed: _Member) -> None:
        """After an outage answer from ``failed``, later calls go to the next member.

        Concurrent calls that failed on the same member rotate only once. The
        channel stays open (calls in flight on it end on their own deadline),
        but the watch streams on it are ended: their owners resume them on the
        member now in use.
        """
        if len(self.endpoints) < 2 or failed.index != self._index:
            return
        self._index = (self._index + 1) % len(self.endpoints)
        self.failovers += 1
        log.info("etcd: %s failed; using %s", failed.endpoint.url, self.url)
        for call in list(failed.watches):
            failed.moved.add(call)
            call.cancel()

    async def call(self, stub: str, method: str, request: Any) -> Any:
        """One unary RPC with the deadline, a re-login on an expired token, and
        translation of every gRPC failure."""
        if self._metrics is None:
            return await self._call(stub, method, request)
        with self._metrics.time_registry_operation(method):
            return await self._call(stub, method, request)

    async def _call(self, stub: str, method: str, request: Any) -> Any:
        for attempt in range(2):
            member = await self._ready()
            target = getattr(getattr(member, stub), method)
            try:
                return await target(request, timeout=self.timeout, metadata=member.metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and attempt == 0:
                    member.authenticated = False
                    continue
                error = translate(exc, member.endpoint.url)
                if isinstance(error, StoreUnavailable):
                    self._fail_over(member)
                raise error from exc
            except asyncio.CancelledError:
                if _cancelled_by_us():
                    raise
                # grpc.aio cancelled the call under us (its channel went away).
                self._fail_over(member)
                raise StoreUnavailable(
                    f"etcd at {member.endpoint.url}: call cancelled by its channel"
                ) from None
        raise AssertionError("unreachable")

    async def keepalive_once(
        self, lease_id: int, deadline: float | None = None, fresh: bool = False
    ) -> int:
        """Refresh a lease within ``deadline`` (default: the request timeout); returns
        the TTL etcd granted (0: the lease is gone).

        Keepalives go over a channel of their own, to the member in use. With
        ``fresh`` it is a new one (a new TCP connection): after a refresh failed, the
        old connection may be stuck in a blackout's retransmission back-off long after
        the network is back."""

        async def one_request() -> AsyncIterator[Any]:
            yield rpc.LeaseKeepAliveRequest(ID=lease_id)

        member = await self._ready()
        if fresh or self._keepalive is None or self._keepalive[0] != member.index:
            self._open_keepalive_channel(member)
        await self._close_retired_keepalive_channels()
        assert self._keepalive is not None
        timeout = self.timeout if deadline is None else min(deadline, self.timeout)
        call = self._keepalive[2].LeaseKeepAlive(
            one_request(), timeout=timeout, metadata=member.metadata
        )
        url = member.endpoint.url
        try:
            async for reply in call:
                return int(reply.TTL)
        except grpc.aio.AioRpcError as exc:
            error = translate(exc, url)
            # A refresh's deadline is short: one missed is retried on a fresh
            # connection to the same member; a missed retry moves to the next member.
            timed_out = exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            if isinstance(error, StoreUnavailable) and (fresh or not timed_out):
                self._fail_over(member)
            raise error from exc
        except asyncio.CancelledError:
            if _cancelled_by_us():
                raise
            self._fail_over(member)
            raise StoreUnavailable(f"etcd at {url}: keepalive cancelled by its channel") from None
        finally:
            call.cancel()
        self._fail_over(member)
        raise StoreUnavailable(f"cannot reach etcd at {url}: keepalive stream closed")

    def _open_keepalive_channel(self, member: _Member) -> None:
        if self._keepalive is not None:
            # Closed only once no keepalive can still be in flight on it (each has a
            # deadline of at most the request timeout): closing a channel cancels its
            # calls, and another lease's refresh may be using this one.
            due = time.monotonic() + self.timeout + 1.0
            self._retired_keepalive.append((due, self._keepalive[1]))
        # A subchannel of its own: gRPC would otherwise share the stuck connection.
        channel = self._new_channel(member.endpoint, (("grpc.use_local_subchannel_pool", 1),))
        self._keepalive = (member.index, channel, rpc.LeaseStub(channel))

    async def _close_retired_keepalive_channels(self, everything: bool = False) -> None:
        now = time.monotonic()
        keep = []
        for due, channel in self._retired_keepalive:
            if everything or due <= now:
                await channel.close()
            else:
                keep.append((due, channel))
        self._retired_keepalive = keep

    async def watch(self, key: bytes, end: bytes, start_revision: int) -> AsyncGenerator[Any, None]:
        """Raw WatchResponses of one fresh stream. The first item is the
        creation response. A compacted start raises StoreCompacted with etcd's
        compact revision; a broken stream, or one moved off a failed member,
        raises StoreUnavailable."""
        member = await self._ready()
        stop = asyncio.Event()
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=key, range_end=end, start_revision=start_revision, progress_notify=True
            )
        )

        async def requests() -> AsyncIterator[Any]:
            yield create
            await stop.wait()  # keep the request side open for the stream's life

        call = member.watch.Watch(requests(), metadata=member.metadata)
        url = member.endpoint.url
        member.watches.add(call)
        try:
            async with asyncio.timeout(self.timeout):
                first = await call.read()
            if first is grpc.aio.EOF:
                raise StoreUnavailable(f"cannot reach etcd at {url}: watch stream closed")
            self._check(first, url)
            yield first
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise StoreUnavailable(f"cannot reach etcd at {url}: watch stream closed")
                self._check(response, url)
                yield response
        except TimeoutError as exc:
            self._fail_over(member)
            raise StoreUnavailable(f"cannot reach etcd at {url}: watch not created") from exc
        except grpc.aio.AioRpcError as exc:
            if call in member.moved and exc.code() == grpc.StatusCode.CANCELLED:
                raise StoreUnavailable(f"watch moved off etcd at {url}") from exc
            error = translate(exc, url)
            if isinstance(error, StoreUnavailable):
                self._fail_over(member)
            raise error from exc
        except asyncio.CancelledError:
            if _cancelled_by_us():
                raise
            self._fail_over(member)
            raise StoreUnavailable(f"watch moved off etcd at {url}") from None
        finally:
            member.watches.discard(call)
            member.moved.discard(call)
            stop.set()
            call.cancel()

    @staticmethod
    def _check(response: Any, url: str) -> None:
        if response.compact_revision:
            raise StoreCompacted(
                f"etcd at {url}: revision compacted up to {response.compact_revision}",
                int(response.compact_revision),
            )
        if response.canceled:
            reason = response.cancel_reason or "no reason given"
            raise StoreError(f"etcd at {url} canceled the watch: {reason}")
