"""Serving: systemd socket activation, listeners that survive a restart of the
servers (SIGHUP), clean cancellation, and the unix socket file's life."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fleet.api.app import create_app
from fleet.api.server import bind_unix, close_listeners, open_listeners, systemd_listen_fds
from fleet.cluster.etcd import EtcdProcess
from fleet.errors import InvalidConfig
from fleet.registry.etcd import EtcdRegistry
from tests.api.support import serving, short_tmpdir, wait_listening
from tests.asyncsupport import async_test

ROOT = Path(__file__).resolve().parents[2]


async def get_units(path: str) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(uds=path)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as client:
        return await client.get("/fleet/v1/units")


@async_test
async def test_listeners_survive_restarting_the_servers(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    with short_tmpdir() as tmp:
        path = str(tmp / "fleet.sock")
        registry = await EtcdRegistry.connect([etcd.endpoint], etcd_prefix, request_timeout=2.0)
        listeners = open_listeners(unix_path=path, listen_fds=[])
        inode = os.stat(path).st_ino
        try:
            for version in ("1", "2", "3"):  # a reconfigure builds a new app each time
                app = create_app(registry, machine_id="m", version=version)
                async with serving(app, listeners) as task:
                    await wait_listening(path)
                    r = await get_units(path)
                    assert r.status_code == 200
                    assert r.headers["server"] == f"fleetd/{version}"
                assert task.cancelled()
                # Between servers the socket stays bound: clients queue, nothing is refused.
                assert os.stat(path).st_ino == inode
                probe = socket.socket(socket.AF_UNIX)
                probe.connect(path)
                probe.close()
        finally:
            close_listeners(listeners)
            await registry.close()
        assert not await asyncio.to_thread(os.path.exists, path)


def test_bind_unix_replaces_a_stale_socket_but_not_a_file() -> None:
    with short_tmpdir() as tmp:
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(tmp / "fleet.sock"))
        stale.close()  # the file remains, like after a crash
        sock = bind_unix(str(tmp / "fleet.sock"), 0o600)
        try:
            assert os.stat(tmp / "fleet.sock").st_mode & 0o777 == 0o600
        finally:
            sock.close()
        (tmp / "notasocket").write_text("precious")
        with pytest.raises(InvalidConfig, match="not a socket"):
            bind_unix(str(tmp / "notasocket"))
        assert (tmp / "notasocket").read_text() == "precious"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, 0, id="none"),
        pytest.param({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, 0, id="other-pid"),
        pytest.param({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, 0, id="garbage"),
        pytest.param({"LISTEN_PID": "{pid}", "LISTEN_FDS": "0"}, 0, id="zero"),
    ],
)
def test_listen_fds_ignores_what_is_not_for_us(env: dict[str, str], expected: int) -> None:
    environ = {k: v.replace("{pid}", str(os.getpid())) for k, v in env.items()}
    assert len(systemd_listen_fds(environ)) == expected
    assert "LISTEN_PID" not in environ or env["LISTEN_PID"] == "x"


def test_socket_activation_with_systemd_socket_activate(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    with short_tmpdir() as tmp:
        activated = str(tmp / "activated.sock")
        forbidden = str(tmp / "fleet.sock")
        log = open(tmp / "child.log", "wb")  # noqa: SIM115 - closed below
        child = subprocess.Popen(
            [
                "systemd-socket-activate",
                "--listen",
                activated,
                sys.executable,
                str(ROOT / "tests/api/socket_child.py"),
                etcd.endpoint,
                etcd_prefix,
                forbidden,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=log,
        )
        try:

            async def check() -> None:
                # systemd-socket-activate starts the child on the first connection.
                r = await get_units(activated)
                assert r.status_code == 200
                assert r.headers["server"] == "fleetd/socket-activated"

            try:
                asyncio.run(asyncio.wait_for(check(), 20))
            except BaseException:
                print((tmp / "child.log").read_text(errors="replace"))
                raise
            assert not os.path.exists(forbidden)
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            log.close()
