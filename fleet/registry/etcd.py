"""EtcdRegistry: every registry port of :mod:`fleet.ports`, on etcd v3.

It combines the store modules (units and the read side, presence, engine
leadership, typed watches) over one connection and one key prefix, and owns
connecting and closing. The key schema is :mod:`fleet.registry.keys`; time
comes only from the event loop, and lease expiry is etcd's, never a client
clock's.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from fleet.registry.client import EtcdConnection, parse_endpoints
from fleet.registry.events import EventsRegistry
from fleet.registry.keys import DEFAULT_PREFIX
from fleet.registry.leadership import LeadershipRegistry
from fleet.registry.leases import EtcdLeadership, EtcdMachineLease
from fleet.registry.maintenance import MaintenanceRegistry
from fleet.registry.presence import PresenceRegistry
from fleet.registry.units import UnitRegistry
from fleet.registry.watch import WatchRegistry

if TYPE_CHECKING:  # prometheus_client is not imported by fleetctl's etcd driver
    from fleet.metrics import FleetMetrics

__all__ = ["DEFAULT_PREFIX", "EtcdLeadership", "EtcdMachineLease", "EtcdRegistry"]


class EtcdRegistry(
    UnitRegistry,
    PresenceRegistry,
    LeadershipRegistry,
    MaintenanceRegistry,
    WatchRegistry,
    EventsRegistry,
):
    """UnitStore, ClusterView, Watchable, EngineStore, AgentStore, MaintenanceStore
    and EventStore on etcd v3."""

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

    async def __aenter__(self) -> EtcdRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
