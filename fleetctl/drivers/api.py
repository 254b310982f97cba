"""The default fleetctl driver: :class:`~fleetctl.client.FleetClient` over fleet API v1.

It speaks the original wire protocol (``/fleet/v1``, fleet's page tokens and
error envelopes), so it drives our fleetd and the original Go one alike.
Endpoints: ``unix:///path`` (or ``file:///path``) for the local socket,
``http(s)://host:port`` for TCP, with an optional CA and client certificate
for the TLS listener. Requests go through the small blocking client of
:mod:`fleetctl.drivers.http`; without a running event loop the client's
coroutines never suspend, so a command over this driver needs no event loop
(see :meth:`fleetctl.context.App.run`), and within one each request runs in a
worker thread. An httpx transport can be plugged in
instead: that is how ``--tunnel`` carries the same requests over SSH. Error
envelopes become :mod:`fleet.errors` exceptions carrying the server's message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote, urlencode, urlsplit

from fleet.errors import (
    AlreadyExists,
    APIError,
    FleetError,
    InvalidConfig,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    TooLarge,
)
from fleetctl.drivers.http import HttpConnection, ProtocolError, Reply
from fleetctl.drivers.wire import (
    cluster_info_from_wire,
    machine_from_wire,
    maintenance_from_wire,
    unit_info_from_wire,
    unit_infos_from_wire,
    unit_state_from_wire,
)

R = TypeVar("R")

if TYPE_CHECKING:
    import ssl

    import httpx

    from fleet.core.events import Event, EventQuery
    from fleet.core.model import ClusterInfo, DesiredState, Machine, UnitState
    from fleet.core.unitfile import UnitFile
    from fleet.core.views import UnitInfo
    from fleet.maintenance import DrainOptions, Maintenance
    from fleetctl.client import ClientSettings
    from fleetctl.ssh import SSHConnection

API_PATH = "/fleet/v1/"
# Any host name works over a unix socket; this one shows up in server logs.
UNIX_BASE_URL = "http://fleet"
_MAX_PAGES = 10_000  # a server that never stops paging is broken, not big
_RESTARTS = 3  # listings started again after their snapshot expired (HTTP 410)
FOLLOW_POLL = 0.5  # seconds between looks for new events (fleetctl events -f)
FOLLOW_OVERLAP = 30.0  # each look starts this long before the newest event seen
# fleetd sends a heartbeat after 15 s of quiet: three missed ones is a dead server.
_WATCH_SILENCE = 45.0


def _ssl_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    import ssl  # https only: plain HTTP and unix sockets never pay for it

    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidConfig(f"cannot load CA file {ca_file}: {_reason(exc)}") from exc
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidConfig(
                f"cannot load client certificate {cert_file}: {_reason(exc)}"
            ) from exc
    return context


def _reason(exc: OSError) -> str:
    # OSError and ssl.SSLError keep the readable part in strerror.
    return str(exc.strerror or exc)


def parse_endpoint(endpoint: str) -> tuple[str, str | None]:
    """(base URL, unix socket path or None) for an ``--endpoint`` value."""
    split = urlsplit(endpoint)
    if split.scheme in ("unix", "file"):
        # "unix://var/run/fleet.sock" parses "var" as the host: a missing slash.
        if split.netloc:
            raise FleetError(
                f'unable to connect to host "{split.netloc}" with scheme "{split.scheme}": '
                f"a unix socket endpoint looks like {split.scheme}:///var/run/fleet.sock"
            )
        if not split.path:
            raise FleetError(f"no socket path in endpoint {endpoint!r}")
        return UNIX_BASE_URL, split.path
    if split.scheme in ("http", "https"):
        if not split.hostname:
            raise FleetError(f"no host in endpoint {endpoint!r}")
        return f"{split.scheme}://{split.netloc}", None
    raise FleetError(
        f'unable to connect to host "{split.netloc}" with scheme "{split.scheme}": '
        "use unix://, file://, http:// or https://"
    )


def _message(response: Reply) -> str | None:
    """The message of fleet's error envelope; None if the body is not one."""
    try:
        body = response.json()
        message = body["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return None


def _is_not_found(response: Reply) -> bool:
    """fleet's 404 for a unit (with its envelope), not any server's 404."""
    return response.status == 404 and _message(response) is not None


def _raise_for(response: Reply, endpoint: str) -> None:
    if response.status < 400:
        return
    message = _message(response)
    status = response.status
    if message is None:
        # Every fleet API error carries the envelope: something else answered.
        raise APIError(
            f"{endpoint} did not answer as a fleet API (HTTP {status} "
            f"{response.reason or ''}".rstrip()
            + "); an etcd endpoint needs --driver=etcd",
            status,
        )
    if status == 400:
        raise InvalidInput(message)
    if status == 413:
        raise TooLarge(message)
    if status == 404:
        raise NotFound(message)
    if status == 409:
        raise AlreadyExists(message)
    if status == 503:
        raise StoreUnavailable(message)
    raise APIError(f"fleet API error {status}: {message}", status)


def _raise_watch(response: Reply, endpoint: str) -> None:
    if response.status in (404, 405):
        # fleet's own API (or an older fleetd) has no change feed.
        raise APIError(
            f"the fleet API at {endpoint} has no change feed (GET /fleet/v1/watch): "
            "--watch needs a newer fleetd, or --driver=etcd",
            response.status,
        )
    _raise_for(response, endpoint)


def _options(unit: UnitFile) -> list[dict[str, str]]:
    return [{"section": o.section, "name": o.name, "value": o.value} for o in unit.options]


async def _unblocked(call: Callable[..., R], *args: Any) -> R:
    """``call(*args)``, in a worker thread when an event loop runs here (a blocking
    call would stall it: the server may be served by that very loop, as in tests);
    without one (fleetctl's own runs, see :mod:`fleetctl.blocking`) right here."""
    asyncio = sys.modules.get("asyncio")  # never imported just to find out
    if asyncio is not None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return cast(R, await asyncio.to_thread(call, *args))
    return call(*args)


class ApiClient:
    """:class:`fleetctl.client.FleetClient` over HTTP(S), a unix socket or any httpx transport."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        base_url, uds = parse_endpoint(endpoint)
        self.endpoint = endpoint
        self._on_close = on_close
        self._conn: HttpConnection | None = None
        self._httpx: httpx.AsyncClient | None = None
        if transport is not None:
            self._httpx = _httpx_client(base_url, transport, timeout)
        elif uds is not None:
            self._conn = HttpConnection.unix(uds, timeout=timeout)
        else:
            split = urlsplit(base_url)
            # Plain HTTP never builds a TLS context (loading the CA bundle is ~15 ms).
            tls = _ssl_context(ca_file, cert_file, key_file) if split.scheme == "https" else None
            port = split.port or (443 if tls is not None else 80)
            assert split.hostname is not None  # parse_endpoint checked it
            self._conn = HttpConnection.tcp(
                split.hostname, port, timeout=timeout, netloc=split.netloc, tls=tls
            )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        json_body: object = None,
    ) -> Reply:
        target = API_PATH + path + (f"?{urlencode(params)}" if params else "")
        body = None if json_body is None else json.dumps(json_body).encode()
        if self._httpx is not None:
            return await _httpx_request(self._httpx, self.endpoint, method, target, body)
        assert self._conn is not None
        try:
            return await _unblocked(self._conn.request, method, target, body, "application/json")
        except TimeoutError as exc:
            raise FleetError(
                f"unable to reach the fleet API at {self.endpoint}: no answer in time ({exc!r})"
            ) from exc
        except (OSError, ProtocolError) as exc:
            raise FleetError(f"unable to reach the fleet API at {self.endpoint}: {exc}") from exc

    async def _pages(
        self, path: str, key: str, params: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = dict(params or {})
        restarts = 0
        for _ in range(_MAX_PAGES):
            response = await self._request("GET", path, params=query)
            if response.status == 410 and "nextPageToken" in query and restarts < _RESTARTS:
                # The listing's snapshot was compacted between two pages: list again.
                restarts += 1
                items, query = [], dict(params or {})
                continue
            _raise_for(response, self.endpoint)
            body = response.json()
            items.extend(body.get(key) or [])
            token = body.get("nextPageToken")
            if not token:
                return items
            query["nextPageToken"] = token
        raise APIError(f"the fleet API at {self.endpoint} returned more than {_MAX_PAGES} pages")

    @staticmethod
    def _unit_path(name: str) -> str:
        # quote() keeps a name's bytes in one path segment: "a/b" must reach the
        # server as a name it refuses, not as another resource.
        return "units/" + quote(name, safe="@:\\")

    async def _put(self, name: str, body: dict[str, Any]) -> Reply:
        response = await self._request("PUT", self._unit_path(name), json_body=body)
        _raise_for(response, self.endpoint)
        return response

    # -- FleetClient ------------------------------------------------------------------

    async def list_units(self) -> list[UnitInfo]:
        return sorted(
            unit_infos_from_wire(await self._pages("units", "units")),
            key=lambda info: info.name,
        )

    async def get_unit(self, name: str) -> UnitInfo | None:
        response = await self._request("GET", self._unit_path(name))
        if _is_not_found(response):
            return None
        _raise_for(response, self.endpoint)
        return unit_info_from_wire(response.json())

    async def create_unit(self, name: str, unit: UnitFile, desired: DesiredState) -> None:
        # PUT creates or updates; the API has no create-only request, so look first.
        if await self.get_unit(name) is not None:
            raise AlreadyExists(f"unit {name} already exists")
        await self._put(
            name, {"name": name, "desiredState": desired.value, "options": _options(unit)}
        )

    async def replace_unit(self, name: str, unit: UnitFile, desired: DesiredState) -> None:
        await self._put(
            name, {"name": name, "desiredState": desired.value, "options": _options(unit)}
        )

    async def set_desired_state(self, name: str, desired: DesiredState) -> None:
        try:
            await self._put(name, {"name": name, "desiredState": desired.value})
        except AlreadyExists as exc:
            # 409 here means "unit does not exist and options field empty".
            raise NotFound(f"unit {name} does not exist") from exc

    async def set_desired_states(self, desired: Mapping[str, DesiredState]) -> None:
        body = {"desiredStates": {name: state.value for name, state in desired.items()}}
        response = await self._request("PATCH", "units", json_body=body)
        if response.status == 405:
            # fleet's own API (or an older fleetd) has no such request: one at a time.
            for name, state in desired.items():
                await self.set_desired_state(name, state)
            return
        _raise_for(response, self.endpoint)

    async def destroy_unit(self, name: str) -> bool:
        response = await self._request("DELETE", self._unit_path(name))
        if _is_not_found(response):
            return False
        _raise_for(response, self.endpoint)
        return True

    async def list_unit_states(
        self, machine_id: str | None = None, unit_name: str | None = None
    ) -> list[UnitState]:
        params = {}
        if machine_id:
            params["machineID"] = machine_id
        if unit_name:
            params["unitName"] = unit_name
        states = list(map(unit_state_from_wire, await self._pages("state", "states", params)))
        return sorted(states, key=lambda s: (s.name, s.machine_id))

    async def list_machines(self) -> list[Machine]:
        machines = list(map(machine_from_wire, await self._pages("machines", "machines")))
        return sorted(machines, key=lambda m: m.id)

    async def cluster_info(self, *, etcd: bool = False) -> ClusterInfo:
        response = await self._request("GET", "cluster", params={"etcd": "1"} if etcd else None)
        _raise_for(response, self.endpoint)
        return cluster_info_from_wire(response.json())

    async def list_events(self, query: EventQuery) -> list[Event]:
        from fleet import events

        params = [("unit", name) for name in query.units]
        if query.machine is not None:
            params.append(("machine", query.machine))
        if query.since is not None:
            params.append(("since", events.rfc3339_exact(query.since)))
        if query.limit is not None:
            params.append(("limit", str(query.limit)))
        response = await self._request("GET", "events", params=params)
        if response.status == 404 and _message(response) is not None:
            raise APIError(
                f"the fleet API at {self.endpoint} has no events (an older fleetd?)", 404
            )
        _raise_for(response, self.endpoint)
        try:
            return [events.from_wire(obj) for obj in response.json()["events"]]
        except (ValueError, KeyError, TypeError, InvalidInput) as exc:
            raise APIError(f"{self.endpoint} answered events it cannot mean: {exc}", 200) from exc

    async def follow_events(
        self, query: EventQuery, poll: float = FOLLOW_POLL
    ) -> AsyncGenerator[Event, None]:
        """The listing, then new events by asking again every ``poll`` seconds for
        those since a little before the newest seen (clocks of writers differ)."""
        import asyncio
        from dataclasses import replace

        seen: set[str] = set()
        newest: float | None = None
        current = query
        while True:
            for event in await self.list_events(current):
                if event.id in seen:
                    continue
                seen.add(event.id)
                newest = event.time if newest is None else max(newest, event.time)
                yield event
            if newest is not None:
                current = replace(query, since=newest - FOLLOW_OVERLAP, limit=None)
            elif query.limit is not None:
                current = replace(query, limit=None)
            if len(seen) > 100_000:
                seen.clear()  # a follow that ran for days: forget the oldest ids
            await asyncio.sleep(poll)

    async def update_machine_metadata(
        self, machine_id: str, changes: Mapping[str, str | None]
    ) -> None:
        """One ``PATCH /machines`` for all changes: the server checks the batch
        before it writes any of it."""
        ops: list[dict[str, Any]] = []
        for key, value in changes.items():
            op: dict[str, Any] = {"op": "remove" if value is None else "add"}
            op["path"] = f"/{machine_id}/metadata/{key}"
            if value is not None:
                op["value"] = {"value": value}
            ops.append(op)
        if not ops:
            return
        response = await self._request("PATCH", "machines", json_body=ops)
        _raise_for(response, self.endpoint)

    @staticmethod
    def _machine_path(machine_id: str, what: str) -> str:
        return f"machines/{quote(machine_id, safe='')}/{what}"

    async def cordon(self, machine_id: str, reason: str) -> None:
        path = self._machine_path(machine_id, "cordon")
        _raise_for(await self._request("PUT", path, json_body={"reason": reason}), self.endpoint)

    async def uncordon(self, machine_id: str) -> bool:
        response = await self._request("DELETE", self._machine_path(machine_id, "cordon"))
        if _is_not_found(response):
            return False
        _raise_for(response, self.endpoint)
        return True

    async def drain(self, machine_id: str, options: DrainOptions) -> None:
        body = {
            "maxParallel": options.max_parallel,
            "minHealthyTime": options.min_healthy,
            "timeout": options.give_up_after,
            "includeGlobal": options.include_global,
            "reason": options.reason,
        }
        path = self._machine_path(machine_id, "drain")
        _raise_for(await self._request("PUT", path, json_body=body), self.endpoint)

    async def set_drain_paused(self, machine_id: str, paused: bool) -> bool:
        path = self._machine_path(machine_id, "drain")
        response = await self._request("PATCH", path, json_body={"paused": paused})
        if _is_not_found(response):
            return False
        _raise_for(response, self.endpoint)
        return True

    async def maintenance(self, machine_id: str) -> Maintenance:
        response = await self._request("GET", self._machine_path(machine_id, "drain"))
        _raise_for(response, self.endpoint)
        return maintenance_from_wire(response.json())

    async def set_machine_metadata(self, machine_id: str, key: str, value: str | None) -> None:
        """One key (``None`` removes it): :meth:`update_machine_metadata` of one change."""
        await self.update_machine_metadata(machine_id, {key: value})

    async def watch_changes(self, topics: Sequence[str]) -> AsyncIterator[frozenset[str]]:
        """``GET /fleet/v1/watch``: fleetd's change feed, one notice per line."""
        target = API_PATH + "watch?" + urlencode({"topics": ",".join(topics)})
        if self._httpx is not None:
            lines: AsyncIterator[bytes] = _httpx_lines(self._httpx, self.endpoint, target)
        else:
            lines = self._stream_lines(target)
        async for line in lines:
            try:
                notice = json.loads(line)
                event = notice["event"]
            except (ValueError, KeyError, TypeError) as exc:
                raise APIError(
                    f"the fleet API at {self.endpoint} sent a bad notice {line[:80]!r}"
                ) from exc
            if event == "ready":
                yield frozenset(topics)
            elif event == "changed":
                yield frozenset({str(notice.get("topic", ""))}) & frozenset(topics)
        raise FleetError(f"the fleet API at {self.endpoint} ended the change feed")

    async def _stream_lines(self, target: str) -> AsyncIterator[bytes]:
        assert self._conn is not None
        try:
            reply, lines = await _unblocked(self._conn.stream, target, _WATCH_SILENCE)
            _raise_watch(reply, self.endpoint)
            try:
                while True:
                    line = await _unblocked(next, lines, None)
                    if line is None:
                        return
                    if line.strip():
                        yield line
            finally:
                lines.close()
        except TimeoutError as exc:
            raise FleetError(
                f"the fleet API at {self.endpoint} went silent: no notice in {_WATCH_SILENCE:g}s"
            ) from exc
        except (OSError, ProtocolError) as exc:
            raise FleetError(f"unable to reach the fleet API at {self.endpoint}: {exc}") from exc

    async def aclose(self) -> None:
        try:
            if self._httpx is not None:
                await self._httpx.aclose()
            if self._conn is not None:
                self._conn.close()
        finally:
            if self._on_close is not None:
                self._on_close()


async def connect(settings: ClientSettings, tunnel: SSHConnection | None = None) -> ApiClient:
    """The driver entry point used by :func:`fleetctl.client.connect`.

    With ``--tunnel`` the requests ride ``tunnel`` (the caller's connection, left
    open) or, when none is given, a connection of our own closed with the client.
    """
    if not settings.tunnel:
        return ApiClient(
            settings.endpoint,
            timeout=settings.request_timeout,
            ca_file=settings.ca_file or None,
            cert_file=settings.cert_file or None,
            key_file=settings.key_file or None,
        )
    # paramiko, httpx and asyncio are slow to import: only --tunnel pays for them.
    import asyncio
    import contextlib

    from fleetctl import ssh

    base_url, uds = parse_endpoint(settings.endpoint)
    context = (
        _ssl_context(settings.ca_file, settings.cert_file, settings.key_file)
        if base_url.startswith("https:")
        else None
    )
    conn = tunnel
    if conn is None:
        conn = await asyncio.to_thread(
            ssh.SSHConnection.open, settings.tunnel, settings.ssh_settings()
        )
    try:
        transport = ssh.tunnel_transport(conn, uds=uds, ssl_context=context)
        return ApiClient(
            settings.endpoint,
            timeout=settings.request_timeout,
            ca_file=settings.ca_file or None,
            cert_file=settings.cert_file or None,
            key_file=settings.key_file or None,
            transport=transport,
            on_close=conn.close if tunnel is None else None,
        )
    except BaseException:
        if tunnel is None:
            with contextlib.suppress(Exception):
                conn.close()
        raise


# --- httpx, for the --tunnel transport only ---------------------------------------------


def _httpx_client(base_url: str, transport: httpx.AsyncBaseTransport, timeout: float) -> Any:
    import httpx

    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": "fleetctl"},
    )


async def _httpx_request(
    client: httpx.AsyncClient, endpoint: str, method: str, target: str, body: bytes | None
) -> Reply:
    import httpx

    headers = {"Content-Type": "application/json"} if body is not None else None
    try:
        response = await client.request(method, target, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise FleetError(
            f"unable to reach the fleet API at {endpoint}: no answer in time ({exc!r})"
        ) from exc
    except httpx.TransportError as exc:
        raise FleetError(f"unable to reach the fleet API at {endpoint}: {exc}") from exc
    return Reply(response.status_code, response.reason_phrase, response.content)


async def _httpx_lines(
    client: httpx.AsyncClient, endpoint: str, target: str
) -> AsyncIterator[bytes]:
    import httpx

    timeout = httpx.Timeout(client.timeout.connect, read=_WATCH_SILENCE)
    headers = {"Accept": "application/x-ndjson"}
    try:
        async with client.stream("GET", target, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                body = await response.aread()
                _raise_watch(Reply(response.status_code, response.reason_phrase, body), endpoint)
            async for line in response.aiter_lines():
                if line.strip():
                    yield line.encode()
    except httpx.TimeoutException as exc:
        raise FleetError(
            f"the fleet API at {endpoint} went silent: no notice in {_WATCH_SILENCE:g}s"
        ) from exc
    except httpx.TransportError as exc:
        raise FleetError(f"unable to reach the fleet API at {endpoint}: {exc}") from exc
