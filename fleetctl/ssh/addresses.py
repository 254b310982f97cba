"""How fleetctl spells an SSH address: ``host``, ``host:port`` or ``[v6]:port``,
the default port 22 left implicit as OpenSSH does."""

from __future__ import annotations

from fleet.errors import FleetError

DEFAULT_PORT = 22


def split_host_port(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        host, port = address, ""
    if not host:
        raise FleetError(f"invalid SSH address {address!r}")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise FleetError(f"invalid port in SSH address {address!r}") from None


def join_host_port(host: str, port: int) -> str:
    """An address :meth:`SSHConnection.open` takes; the default port stays implicit."""
    if port == DEFAULT_PORT:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
