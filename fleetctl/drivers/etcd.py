"""The ``--driver=etcd`` client: fleetctl straight on the registry, no fleetd needed.

It reads and writes through :class:`fleet.registry.etcd.EtcdRegistry` (the same
adapter fleetd uses, so keys and transactions are identical) by the use cases
of :mod:`fleet.units` and :mod:`fleet.machines`, the ones the API server runs,
so unit and metadata rules and unit views cannot differ between the drivers.
Every call is bounded by ``--request-timeout`` so an unreachable etcd fails
fast with :class:`~fleet.errors.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, TypeVar

from fleet import __version__, events, machines, maintenance, units
from fleet.core.model import ClusterInfo, DesiredState, Machine, UnitState
from fleet.core.views import ParsedBodies
from fleet.errors import StoreUnavailable

if TYPE_CHECKING:
    from fleet.core.events import Event, EventQuery
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleet.registry.etcd import EtcdRegistry
    from fleetctl.client import ClientSettings
    from fleetctl.ssh import SSHConnection

T = TypeVar("T")


class EtcdFleetClient:
    """:class:`fleetctl.client.FleetClient` over an :class:`EtcdRegistry`."""

    def __init__(
        self,
        registry: EtcdRegistry,
        request_timeout: float,
        where: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._registry = registry
        self._timeout = request_timeout
        self._where = where
        self._on_close = on_close
        # fleetctl's waits list units again and again: parse each body once.
        self._bodies = ParsedBodies(units.BODY_CACHE_SIZE)

    async def _call(self, aw: Awaitable[T]) -> T:
        # The registry has its own per-request deadline; this outer bound makes
        # sure a hung channel (or a retrying client) can never block fleetctl.
        try:
            async with asyncio.timeout(self._timeout * 2 + 0.5):
                return await aw
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"etcd at {self._where} did not answer within {self._timeout:g}s"
            ) from exc

    async def list_units(self) -> list[UnitInfo]:
        return await self._call(units.list_units(self._registry, bodies=self._bodies))

    async def get_unit(self, name: str) -> UnitInfo | None:
        return await self._call(units.get_unit(self._registry, name, self._bodies))

    async def create_unit(self, name: str, unit: UnitFile, desired: DesiredState) -> None:
        await self._call(units.create_unit(self._registry, name, unit, desired))

    async def replace_unit(self, name: str, unit: UnitFile, desired: DesiredState) -> None:
        await self._call(units.replace_unit(self._registry, name, unit, desired))

    async def set_desired_state(self, name: str, desired: DesiredState) -> None:
        await self._call(units.set_desired_state(self._registry, name, desired))

    async def set_desired_states(self, desired: Mapping[str, DesiredState]) -> None:
        await self._call(units.set_desired_states(self._registry, desired))

    async def destroy_unit(self, name: str) -> bool:
        return await self._call(units.destroy_unit(self._registry, name))

    async def list_unit_states(
        self, machine_id: str | None = None, unit_name: str | None = None
    ) -> list[UnitState]:
        return await self._call(units.list_unit_states(self._registry, machine_id, unit_name))

    async def list_machines(self) -> list[Machine]:
        return await self._call(self._registry.list_machines())

    async def cluster_info(self, *, etcd: bool = False) -> ClusterInfo:
        registry = self._registry
        leader = await self._call(registry.get_leader())
        lost = await self._call(registry.list_lost_machines())
        members = await self._call(registry.etcd_members()) if etcd else []
        return ClusterInfo(leader, tuple(lost), tuple(members))

    async def cordon(self, machine_id: str, reason: str) -> None:
        await self._call(maintenance.cordon(self._registry, machine_id, reason, time.time()))

    async def uncordon(self, machine_id: str) -> bool:
        return await self._call(maintenance.uncordon(self._registry, machine_id))

    async def drain(self, machine_id: str, options: maintenance.DrainOptions) -> None:
        await self._call(maintenance.drain(self._registry, machine_id, time.time(), options))

    async def set_drain_paused(self, machine_id: str, paused: bool) -> bool:
        return await self._call(self._registry.set_drain_paused(machine_id, paused))

    async def maintenance(self, machine_id: str) -> maintenance.Maintenance:
        return await self._call(maintenance.maintenance_of(self._registry, machine_id))

    async def update_machine_metadata(
        self, machine_id: str, changes: Mapping[str, str | None]
    ) -> None:
        batch = [machines.MetadataChange(machine_id, k, v) for k, v in changes.items()]
        await self._call(machines.update_metadata(self._registry, batch))

    async def list_events(self, query: EventQuery) -> list[Event]:
        found, _ = await self._call(self._registry.list_events(query))
        return found

    async def follow_events(self, query: EventQuery) -> AsyncGenerator[Event, None]:
        found, revision = await self._call(self._registry.list_events(query))
        for event in found:
            yield event
        stream = events.follow_from(self._registry, query, found, revision)
        async with contextlib.aclosing(stream):
            async for event in stream:
                yield event

    async def watch_changes(self, topics: Sequence[str]) -> AsyncIterator[frozenset[str]]:
        from fleet.changes import ChangeFeed  # the feed fleetd's API serves, on etcd itself

        async for changed in ChangeFeed(self._registry).follow(topics):
            yield changed

    async def aclose(self) -> None:
        try:
            await self._registry.close()
        finally:
            if self._on_close is not None:
                self._on_close()


async def connect(settings: ClientSettings, tunnel: SSHConnection | None = None) -> EtcdFleetClient:
    """Open the registry on every endpoint of ``--endpoint`` (etcd's own failover).

    With ``--tunnel`` each endpoint is reached through a local TCP forward over
    SSH (see :func:`_forwarded`); the forwards close with the client.
    """
    from fleet.registry.etcd import EtcdRegistry  # aetcd/grpc are slow to import

    endpoints = list(settings.endpoints)
    where = ",".join(endpoints)
    on_close: Callable[[], None] | None = None
    if settings.tunnel:
        endpoints, on_close = await _forwarded(settings, endpoints, tunnel)
    try:
        async with asyncio.timeout(settings.request_timeout * 2 + 0.5):
            registry = await EtcdRegistry.connect(
                endpoints,
                settings.etcd_key_prefix,
                request_timeout=settings.request_timeout,
                ca_file=settings.ca_file or None,
                cert_file=settings.cert_file or None,
                key_file=settings.key_file or None,
            )
    except TimeoutError as exc:
        if on_close is not None:
            on_close()
        raise StoreUnavailable(
            f"etcd at {where} did not answer within {settings.request_timeout:g}s"
        ) from exc
    except BaseException:
        if on_close is not None:
            on_close()
        raise
    client = EtcdFleetClient(registry, settings.request_timeout, where, on_close)
    try:
        newest = newest_version(m.version for m in await client.list_machines())
    except BaseException:
        await client.aclose()
        raise
    if newest is not None and _version_key(newest) > _version_key(__version__):
        print(
            f"WARNING: fleetctl ({__version__}) is older than the latest registered "
            f"version of fleet found in the cluster ({newest}). You are strongly recommended "
            "to upgrade fleetctl to prevent incompatibility issues.",
            file=sys.stderr,
        )
    return client


def _version_key(version: str) -> tuple[int, ...]:
    """Numeric parts of a dotted version (``1.2.3-rc1`` -> (1, 2, 3)); pre-release
    suffixes are ignored, which can only make the warning quieter."""
    parts = []
    for piece in version.split("-", 1)[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def newest_version(versions: Iterable[str]) -> str | None:
    """The highest fleetd version registered in the cluster (fleet's skew check,
    done only by the etcd driver, as in fleet)."""
    known = [v for v in versions if _version_key(v)]
    return max(known, key=_version_key) if known else None


async def _forwarded(
    settings: ClientSettings, endpoints: list[str], tunnel: SSHConnection | None
) -> tuple[list[str], Callable[[], None]]:
    """gRPC takes no custom transport, so aetcd is pointed at one local listener per
    endpoint, each carried over SSH (``direct-tcpip``) to that endpoint as the
    bastion routes it (fleet: the address "must be routable from the server")."""
    from fleet.registry.endpoints import split_endpoint
    from fleetctl import ssh

    own = tunnel is None
    conn = tunnel
    if conn is None:
        conn = await asyncio.to_thread(
            ssh.SSHConnection.open, settings.tunnel, settings.ssh_settings()
        )
    forwards: list[ssh.LocalForward] = []

    def close() -> None:
        for forward in forwards:
            forward.close()
        if own:
            conn.close()

    local: list[str] = []
    try:
        for endpoint in endpoints:
            scheme, host, port = split_endpoint(endpoint)
            forward = ssh.LocalForward(conn, host, port, timeout=settings.request_timeout)
            forwards.append(forward)
            local.append(f"{scheme}://{forward.address}")
    except BaseException:
        close()
        raise
    return local, close
