"""The one interface every fleetctl command talks through, and how it is chosen.

:class:`FleetClient` is implemented twice: over the fleet HTTP API
(:mod:`fleetctl.drivers.api`, the default) and directly over etcd
(:mod:`fleetctl.drivers.etcd`, ``--driver=etcd``). Each driver module exposes
``async def connect(settings: ClientSettings, tunnel=None) -> FleetClient``; transport
concerns (TLS, the SSH ``--tunnel``) stay inside the driver, so no command
knows about them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from fleet.errors import FleetError, InvalidConfig
from fleet.registry.keys import DEFAULT_PREFIX

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence

    from fleet.core.events import Event, EventQuery
    from fleet.core.model import ClusterInfo, DesiredState, Machine, UnitState
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleet.maintenance import DrainOptions, Maintenance
    from fleetctl.ssh import SSHConnection, SSHSettings

DRIVERS = ("api", "etcd")
DEFAULT_ENDPOINT = "unix:///var/run/fleet.sock"
LEGACY_ETCD_ENDPOINTS = "http://127.0.0.1:2379,http://127.0.0.1:4001"


class FleetClient(Protocol):
    """What fleetctl needs from a cluster; every method is a coroutine."""

    async def list_units(self) -> list[UnitInfo]:
        """Every registry unit, sorted by name."""

    async def get_unit(self, name: str) -> UnitInfo | None: ...

    async def create_unit(self, name: str, unit: UnitFile, desired: DesiredState) -> None:
        """AlreadyExists if a unit of that name exists."""

    async def replace_unit(self, name: str, unit: UnitFile, desired: DesiredState) -> None:
        """Create or overwrite the unit's file and desired state at once."""

    async def set_desired_state(self, name: str, desired: DesiredState) -> None:
        """NotFound if the unit does not exist."""

    async def set_desired_states(self, desired: Mapping[str, DesiredState]) -> None:
        """Several at once, in one write where the cluster can (NotFound if any is
        missing)."""

    async def destroy_unit(self, name: str) -> bool:
        """False if there was no such unit."""

    async def list_unit_states(
        self, machine_id: str | None = None, unit_name: str | None = None
    ) -> list[UnitState]:
        """Published systemd states, sorted by (unit name, machine id), exact filters."""

    async def list_machines(self) -> list[Machine]:
        """Live machines sorted by id (a cordoned one carries its cordon)."""

    async def cluster_info(self, *, etcd: bool = False) -> ClusterInfo:
        """The engine leader and the lost machines; with ``etcd`` the etcd members
        and their health too (one status request per member)."""

    async def cordon(self, machine_id: str, reason: str) -> None:
        """NotFound if the machine is not in the cluster."""

    async def uncordon(self, machine_id: str) -> bool:
        """Lift the cordon and end any drain; False if it was not cordoned."""

    async def drain(self, machine_id: str, options: DrainOptions) -> None:
        """Cordon the machine and ask the engine to drain it (resuming one under way)."""

    async def set_drain_paused(self, machine_id: str, paused: bool) -> bool:
        """False if the machine is not being drained."""

    async def maintenance(self, machine_id: str) -> Maintenance:
        """The machine's cordon, drain request and the engine's progress."""

    async def update_machine_metadata(
        self, machine_id: str, changes: Mapping[str, str | None]
    ) -> None:
        """Dynamic metadata of one machine: key -> value, None removes the key.
        Every change is checked before the first is written (InvalidInput)."""

    async def list_events(self, query: EventQuery) -> list[Event]:
        """The cluster's events ``query`` selects, oldest first (B13)."""

    def follow_events(self, query: EventQuery) -> AsyncGenerator[Event, None]:
        """The same events, then every new one as it is recorded, until closed."""

    def watch_changes(self, topics: Sequence[str]) -> AsyncIterator[frozenset[str]]:
        """Which topics (``units``, ``machines``) changed, batch by batch, driven by
        watches; first every topic once, as soon as no later change can be missed.
        Never ends on its own."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class ClientSettings:
    """The global flags, resolved (flag, else ``FLEETCTL_*`` env, else default).

    The SSH settings are here only for the drivers' ``--tunnel`` transport.
    """

    endpoint: str = DEFAULT_ENDPOINT
    driver: str = "api"
    tunnel: str = ""
    ssh_username: str = "core"
    ssh_timeout: float = 10.0
    known_hosts_file: str = "~/.fleetctl/known_hosts"
    strict_host_key_checking: bool = True
    ssh_identity_files: tuple[str, ...] = ()
    request_timeout: float = 3.0
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    etcd_key_prefix: str = DEFAULT_PREFIX
    debug: bool = False

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.endpoint.split(",") if part.strip())

    def ssh_settings(self) -> SSHSettings:
        """The SSH part of the global flags, in the SSH package's own terms."""
        from fleetctl.ssh import SSHSettings  # paramiko: only SSH paths pay for it

        return SSHSettings(
            username=self.ssh_username,
            timeout=self.ssh_timeout,
            known_hosts_file=Path(self.known_hosts_file).expanduser(),
            strict_host_key_checking=self.strict_host_key_checking,
            identity_files=tuple(Path(p).expanduser() for p in self.ssh_identity_files),
        )


Warn = Callable[[str], None]


def resolve_driver(settings: ClientSettings, warn: Warn) -> ClientSettings:
    """Check the driver name and narrow the endpoint list to what the driver uses.

    The API driver uses only the first of a comma list (fleet warns the same
    way); the etcd driver hands the whole list to the etcd client.
    """
    driver = settings.driver.lower()
    if driver not in DRIVERS:
        raise InvalidConfig(f"unknown driver {settings.driver!r}: use one of {', '.join(DRIVERS)}")
    endpoints = settings.endpoints
    if not endpoints:
        raise InvalidConfig("no endpoint given")
    if driver == "api" and len(endpoints) > 1:
        warn(f"WARNING: multiple endpoints provided but only the first ({endpoints[0]}) is used")
        return replace(settings, driver=driver, endpoint=endpoints[0])
    return replace(settings, driver=driver)


async def connect(settings: ClientSettings, tunnel: SSHConnection | None = None) -> FleetClient:
    """Import the chosen driver lazily (start-up time) and connect it.

    ``tunnel`` is the caller's open ``--tunnel`` connection, shared with the
    remote commands and closed by the caller; without it a driver opens (and
    closes) its own when ``settings.tunnel`` is set."""
    module_name = f"fleetctl.drivers.{settings.driver}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise FleetError(
            f"the {settings.driver} driver is not available in this build "
            f"({module_name} is missing)"
        ) from exc
    factory = cast("Callable[..., Awaitable[FleetClient]]", module.connect)
    return await factory(settings, tunnel=tunnel)
