"""Feature B11 and hostile input: names that could escape a path are refused
before anything is written, and the TLS listener demands a client certificate
from the right CA."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from fleet.api.app import create_app
from fleet.api.server import TlsConfig, close_listeners, open_listeners
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from fleet.errors import FleetError, InvalidInput
from fleet.registry.etcd import EtcdRegistry
from fleetctl.drivers.api import ApiClient
from tests.api.certs import CertificateAuthority
from tests.api.support import (
    VERSION,
    free_tcp_port,
    served_api,
    serving,
    short_tmpdir,
)
from tests.asyncsupport import async_test, eventually
from tests.registry.support import dump

EXEC = [{"section": "Service", "name": "ExecStart", "value": "/bin/true"}]


async def raw_request(socket_path: str, method: str, target: str, body: bytes = b"") -> int:
    """Send ``target`` byte for byte: httpx would normalise ``..`` away."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: fleet\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/fleet/v1/units/../x.service", id="dot-dot"),
        pytest.param("/fleet/v1/units/a%2Fb.service", id="encoded-slash"),
        pytest.param("/fleet/v1/units/a/b.service", id="slash"),
        pytest.param("/fleet/v1/units/%2E%2E%2Fx.service", id="encoded-dot-dot"),
        pytest.param("/fleet/v1/units/a%00.service", id="nul"),
        pytest.param("/fleet/v1/units/x%0A.service", id="newline"),
    ],
)
def test_hostile_unit_names_refused_with_nothing_written(
    etcd: EtcdProcess, etcd_prefix: str, target: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            body = json.dumps({"desiredState": "launched", "options": EXEC}).encode()
            assert await raw_request(api.socket_path, "PUT", target, body) == 400
            assert await raw_request(api.socket_path, "GET", target) == 400
            assert await raw_request(api.socket_path, "DELETE", target) == 400
            written = await dump(api.registry)
            assert written == {}

    run()


@pytest.mark.parametrize("name", ["../x.service", "a/b.service", "a%2Fb.service"])
def test_client_sends_hostile_names_as_one_segment(
    etcd: EtcdProcess, etcd_prefix: str, name: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            client = ApiClient(f"unix://{api.socket_path}", timeout=5.0)
            try:
                with pytest.raises(InvalidInput, match="invalid unit name"):
                    await client.set_desired_state(name, DesiredState.LAUNCHED)
                with pytest.raises(InvalidInput, match="invalid unit name"):
                    await client.get_unit(name)
            finally:
                await client.aclose()
            written = await dump(api.registry)
            assert written == {}

    run()


@async_test
async def test_tls_listener_requires_client_cert_from_its_ca(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    with short_tmpdir() as tmp:
        ca = CertificateAuthority(tmp, "fleet-ca")
        rogue = CertificateAuthority(tmp, "rogue-ca")
        server = ca.issue("server", server=True)
        good = ca.issue("client", server=False)
        bad = rogue.issue("intruder", server=False)
        port = free_tcp_port()
        registry = await EtcdRegistry.connect([etcd.endpoint], etcd_prefix, request_timeout=2.0)
        app = create_app(registry, machine_id="m", version=VERSION)
        listeners = open_listeners(
            unix_path=None,
            listen_fds=[],
            tcp=[("127.0.0.1", port)],
            tls=TlsConfig(str(server.cert), str(server.key), str(ca.files.cert)),
        )
        endpoint = f"https://127.0.0.1:{port}"
        try:
            async with serving(app, listeners):

                async def answered() -> bool:
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                    except OSError:
                        return False
                    writer.close()
                    await writer.wait_closed()
                    return True

                await eventually(answered, timeout=5.0)
                trusted = ApiClient(
                    endpoint,
                    timeout=5.0,
                    ca_file=str(ca.files.cert),
                    cert_file=str(good.cert),
                    key_file=str(good.key),
                )
                try:
                    assert await trusted.list_units() == []
                finally:
                    await trusted.aclose()

                for cert in (bad, None):  # a wrong CA's certificate, then none at all
                    client = ApiClient(
                        endpoint,
                        timeout=5.0,
                        ca_file=str(ca.files.cert),
                        cert_file=str(cert.cert) if cert else None,
                        key_file=str(cert.key) if cert else None,
                    )
                    try:
                        with pytest.raises(FleetError, match="unable to reach the fleet API"):
                            await client.list_units()
                    finally:
                        await client.aclose()

                # Plain HTTP on the TLS port is refused too.
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as plain:
                    with pytest.raises(httpx.TransportError):
                        await plain.get("/fleet/v1/units")
        finally:
            close_listeners(listeners)
            await registry.close()
