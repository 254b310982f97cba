"""How an etcd endpoint is spelled: ``http(s)://host[:port]``, or a bare
``host[:port]`` meaning plain http, on port 2379 unless one is given. The
registry connection parses its endpoints here; so does fleetctl's etcd driver
when ``--tunnel`` forwards each endpoint, so a bad endpoint gets the same
message either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleet.errors import InvalidConfig

DEFAULT_PORT = 2379


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    target: str  # host:port for gRPC
    tls: bool


def split_endpoint(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of one endpoint; an IPv6 host comes without brackets."""
    split = urlsplit(url if "://" in url else f"http://{url}")
    if split.scheme not in ("http", "https") or not split.hostname:
        raise InvalidConfig(f"invalid etcd endpoint {url!r}: want http(s)://host:port")
    try:
        port = split.port or DEFAULT_PORT
    except ValueError as exc:
        raise InvalidConfig(f"invalid etcd endpoint {url!r}: {exc}") from exc
    return split.scheme, split.hostname, port


def parse_endpoints(endpoints: Sequence[str]) -> list[Endpoint]:
    """fleet's ``etcd_servers``: URLs, possibly comma-joined, tried in order."""
    parsed: list[Endpoint] = []
    for item in endpoints:
        for url in (part.strip() for part in item.split(",")):
            if not url:
                continue
            scheme, host, port = split_endpoint(url)
            if ":" in host:
                host = f"[{host}]"
            parsed.append(Endpoint(url, f"{host}:{port}", scheme == "https"))
    if not parsed:
        raise InvalidConfig("no etcd endpoint given")
    return parsed
