"""``fleetctl ui``: the dashboard's URL, with a local port forwarded to a unix-socket API."""

from __future__ import annotations

import asyncio
import signal

import httpx

from fleet.cluster.etcd import EtcdProcess
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import command, env, run


def test_a_tcp_endpoint_needs_no_forward() -> None:
    result = run("--endpoint=http://10.0.0.1:54728", "ui")
    assert (result.code, result.out, result.err) == (0, "http://10.0.0.1:54728/ui/\n", "")


def test_the_etcd_driver_has_no_dashboard() -> None:
    result = run("--driver=etcd", "--endpoint=http://127.0.0.1:1", "ui")
    assert result.code == 2
    assert "use the API driver" in result.err


@async_test
async def test_a_unix_endpoint_is_forwarded_until_ctrl_c(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        proc = await asyncio.create_subprocess_exec(
            *command(f"--endpoint=unix://{api.socket_path}", "ui"),
            env=env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            url = (await proc.stdout.readline()).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/ui/")
        async with httpx.AsyncClient(timeout=5) as client:
            page = await client.get(url)
            assert page.status_code == 200
            assert "<title>fleet</title>" in page.text
            machines = await client.get(url.removesuffix("ui/") + "fleet/v1/machines")
            assert machines.status_code == 200
            assert machines.json() == {}  # no machine registered
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            _, err = await proc.communicate()
        assert proc.returncode == 0
        assert err.decode() == "Forwarding to the fleet API; press Ctrl-C to stop.\n"
