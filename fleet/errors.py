"""The project's one error tree.

Adapters translate foreign exceptions (aetcd/grpc, dbus-fast, paramiko, httpx)
into these at their edge with ``raise ... from exc``; ``fleetctl`` catches
:class:`FleetError` in one place and prints one line with ``exit_code``.

::

    FleetError                      exit 1
    ├── InvalidInput                bad user input, nothing was written
    │   ├── InvalidUnitName
    │   ├── InvalidUnitFile
    │   ├── InvalidRequirements     [X-Fleet] options that cannot be honoured
    │   ├── InvalidConfig
    │   └── TooLarge                over a size limit (a unit, a request body): HTTP 413
    ├── NotFound                    unit / machine / state does not exist
    ├── AlreadyExists               create of something that exists
    ├── ListingExpired              a paged listing's snapshot was compacted: HTTP 410
    ├── Unplaceable                 the engine found no machine (exit 2)
    ├── UnitFailed                  a unit failed where it was placed
    ├── Timeout                     a blocking wait gave up
    ├── StoreError                  etcd
    │   ├── StoreUnavailable        unreachable / no quorum / deadline exceeded
    │   ├── StoreCompacted          a watch asked for a compacted revision: relist
    │   └── NotLeader               a fenced engine write lost its leadership
    ├── SystemdError                D-Bus / systemd refused an operation
    ├── APIError                    the fleet API answered with an error envelope
    └── SSHError
        ├── HostKeyUnknown          not in known_hosts and not accepted
        └── HostKeyMismatch         known_hosts has a different key: never accepted
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class InvalidInput(FleetError):
    """User input (a name, a unit file, a flag, a config value) is not acceptable."""


class InvalidUnitName(InvalidInput):
    pass


class InvalidUnitFile(InvalidInput):
    pass


class InvalidRequirements(InvalidInput):
    pass


class InvalidConfig(InvalidInput):
    pass


class TooLarge(InvalidInput):
    """Input over one of fleet's size limits (:mod:`fleet.core.limits`, the API's
    request body limit); the message names what, its size and the limit."""


class NotFound(FleetError):
    pass


class AlreadyExists(FleetError):
    pass


class ListingExpired(FleetError):
    """The etcd revision a paged listing reads (its page token's) is gone: the
    listing must start again from its first page."""


class Unplaceable(FleetError):
    """The engine could not place a unit on any machine; the message carries why."""

    exit_code = 2


class UnitFailed(FleetError):
    """A unit failed on its machine (systemd's verdict, or the agent could not act
    on it); the message has one line per unit, naming the machine and why."""


class Timeout(FleetError):
    pass


class StoreError(FleetError):
    pass


class StoreUnavailable(StoreError):
    pass


class StoreCompacted(StoreError):
    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class NotLeader(StoreError):
    pass


class SystemdError(FleetError):
    """``dbus_name`` is the D-Bus error name (e.g. ``org.freedesktop.systemd1.NoSuchUnit``)
    when systemd answered with an error, "" when the bus itself failed."""

    def __init__(self, message: str, dbus_name: str = "") -> None:
        super().__init__(message)
        self.dbus_name = dbus_name


class APIError(FleetError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class SSHError(FleetError):
    pass


class HostKeyUnknown(SSHError):
    pass


class HostKeyMismatch(SSHError):
    pass
