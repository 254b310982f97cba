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
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
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


def translate(exc: grpc.aio.AioRpcError, url: str) -> StoreError:
    """One gRPC failure as the project's error; the caller raises it ``from exc``.

    A call cancelled because the task awaiting it is being cancelled stays a
    cancellation: as a StoreError it would be swallowed by the retry loops of
    watches and presence, and a shutdown would wait for them forever.
    """
    code, details = exc.code(), exc.details() or ""
    task = asyncio.current_task()
    if code == grpc.StatusCode.CANCELLED and task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
    if code in _UNAVAILABLE:
        return StoreUnavailable(f"cannot reach etcd at {url}: {details or code.name}")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return StoreCompacted(f"etcd at {url}: {details}")
    return StoreError(f"etcd at {url} refused the request ({code.name}): {details}")


class EtcdConnection:
    """One gRPC channel to the first reachable endpoint, failing over on outage."""

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
        self._channel: grpc.aio.Channel | None = None
        self._retired: list[grpc.aio.Channel] = []
        self._metadata: tuple[tuple[str, str], ...] = ()
        self.kv: Any = None
        self.lease: Any = None
        self.maintenance: Any = None
        self.cluster: Any = None
        self._watch_stub: Any = None
        self._keepalive_channel: grpc.aio.Channel | None = None
        self._keepalive_stub: Any = None
        self._retired_keepalive: list[tuple[float, grpc.aio.Channel]] = []

    @property
    def url(self) -> str:
        return self.endpoints[self._index].url

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

    def _open(self, endpoint: Endpoint) -> None:
        channel = self._new_channel(endpoint)
        self._channel = channel
        self.kv = rpc.KVStub(channel)
        self.lease = rpc.LeaseStub(channel)
        self.maintenance = rpc.MaintenanceStub(channel)
        self.cluster = rpc.ClusterStub(channel)
        self._watch_stub = rpc.WatchStub(channel)
        self._metadata = ()

    async def status_of(self, url: str) -> Any:
        """Maintenance.Status of the member at ``url`` over a channel of its own (the
        member may not be the one in use), within the deadline."""
        (endpoint,) = parse_endpoints([url])
        channel = self._new_channel(endpoint)
        try:
            return await rpc.MaintenanceStub(channel).Status(
                rpc.StatusRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, url) from exc
        finally:
            await channel.close()

    async def _close_channel(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    async def _authenticate(self) -> None:
        if self._username is None or self._channel is None:
            return
        request = rpc.AuthenticateRequest(name=self._username, password=self._password)
        response = await rpc.AuthStub(self._channel).Authenticate(request, timeout=self.timeout)
        self._metadata = (("token", response.token),)

    async def connect(self) -> None:
        """Use the first endpoint that answers a linearizable read within the deadline."""
        failures: list[str] = []
        for index, endpoint in enumerate(self.endpoints):
            self._index = index
            self._open(endpoint)
            try:
                await self._authenticate()
                await self.kv.Range(
                    rpc.RangeRequest(key=b"\x00", count_only=True),
                    timeout=self.timeout,
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as exc:
                failures.append(str(translate(exc, endpoint.url)))
                await self._close_channel()
                continue
            return
        self._index = 0
        raise StoreUnavailable("; ".join(failures))

    async def close(self) -> None:
        await self._close_retired_keepalive_channels(everything=True)
        if self._keepalive_channel is not None:
            channel, self._keepalive_channel = self._keepalive_channel, None
            await channel.close()
        for old in self._retired:
            await old.close()
        self._retired = []
        await self._close_channel()

    async def _fail_over(self, failed: grpc.aio.Channel | None) -> None:
        """After an outage answer on ``failed``, later calls go to the next endpoint.

        Concurrent calls that failed on the same channel rotate only once. The
        old channel is closed one rotation later, not now, so calls still in
        flight on it end on their own deadline instead of being cut.
        """
        if len(self.endpoints) < 2 or failed is None or failed is not self._channel:
            return
        for old in self._retired:
            await old.close()
        self._retired = [failed]
        self._index = (self._index + 1) % len(self.endpoints)
        self._open(self.endpoints[self._index])
        if self._keepalive_channel is not None:
            self._open_keepalive_channel()  # follow to the next endpoint
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._authenticate()

    async def call(self, stub: str, method: str, request: Any) -> Any:
        """One unary RPC with the deadline, a re-login on an expired token, and
        translation of every gRPC failure."""
        if self._channel is None:
            self._open(self.endpoints[self._index])
            await self._guard(self._authenticate())
        if self._metrics is None:
            return await self._call(stub, method, request)
        with self._metrics.time_registry_operation(method):
            return await self._call(stub, method, request)

    async def _call(self, stub: str, method: str, request: Any) -> Any:
        for attempt in range(2):
            channel = self._channel
            target = getattr(getattr(self, stub), method)
            try:
                return await target(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and attempt == 0:
                    await self._guard(self._authenticate())
                    continue
                error = translate(exc, self.url)
                if isinstance(error, StoreUnavailable):
                    await self._fail_over(channel)
                raise error from exc
        raise AssertionError("unreachable")

    async def _guard(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, self.url) from exc

    async def keepalive_once(
        self, lease_id: int, deadline: float | None = None, fresh: bool = False
    ) -> int:
        """Refresh a lease within ``deadline`` (default: the request timeout); returns
        the TTL etcd granted (0: the lease is gone).

        Keepalives go over a channel of their own. With ``fresh`` it is a new one (a
        new TCP connection): after a refresh failed, the old connection may be stuck
        in a blackout's retransmission back-off long after the network is back."""

        async def one_request() -> AsyncIterator[Any]:
            yield rpc.LeaseKeepAliveRequest(ID=lease_id)

        if self._channel is None:
            self._open(self.endpoints[self._index])
        if fresh or self._keepalive_channel is None:
            self._open_keepalive_channel()
        await self._close_retired_keepalive_channels()
        channel = self._channel
        assert self._keepalive_stub is not None
        timeout = self.timeout if deadline is None else min(deadline, self.timeout)
        call = self._keepalive_stub.LeaseKeepAlive(
            one_request(), timeout=timeout, metadata=self._metadata
        )
        try:
            async for reply in call:
                return int(reply.TTL)
        except grpc.aio.AioRpcError as exc:
            error = translate(exc, self.url)
            if isinstance(error, StoreUnavailable):
                await self._fail_over(channel)
            raise error from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # The call was cancelled under us (its channel closed), not this task.
            raise StoreUnavailable(
                f"cannot reach etcd at {self.url}: keepalive call cancelled"
            ) from None
        finally:
            call.cancel()
        raise StoreUnavailable(f"cannot reach etcd at {self.url}: keepalive stream closed")

    def _open_keepalive_channel(self) -> None:
        old, self._keepalive_channel = self._keepalive_channel, None
        if old is not None:
            # Closed only once no keepalive can still be in flight on it (each has a
            # deadline of at most the request timeout): closing a channel cancels its
            # calls, and another lease's refresh may be using this one.
            self._retired_keepalive.append((time.monotonic() + self.timeout + 1.0, old))
        # A subchannel of its own: gRPC would otherwise share the stuck connection.
        channel = self._new_channel(
            self.endpoints[self._index], (("grpc.use_local_subchannel_pool", 1),)
        )
        self._keepalive_channel = channel
        self._keepalive_stub = rpc.LeaseStub(channel)

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
        compact revision; a broken stream raises StoreUnavailable."""
        if self._channel is None:
            self._open(self.endpoints[self._index])
        stop = asyncio.Event()
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=key, range_end=end, start_revision=start_revision, progress_notify=True
            )
        )

        async def requests() -> AsyncIterator[Any]:
            yield create
            await stop.wait()  # keep the request side open for the stream's life

        channel = self._channel
        call = self._watch_stub.Watch(requests(), metadata=self._metadata)
        url = self.url
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
            raise StoreUnavailable(f"cannot reach etcd at {url}: watch not created") from exc
        except grpc.aio.AioRpcError as exc:
            error = translate(exc, url)
            if isinstance(error, StoreUnavailable):
                await self._fail_over(channel)
            raise error from exc
        finally:
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
