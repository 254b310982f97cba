"""fleetctl's SSH layer against a real sshd: host-key checking (fleet's
TestKnownHostsVerification at transport level), remote commands, and the
--tunnel transport carrying HTTP over direct-tcpip and over fd-forward."""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from fleet.errors import HostKeyMismatch, HostKeyUnknown, SSHError
from fleetctl.hostkeys import KnownHosts
from fleetctl.tunnel import SSHConnection, SSHSettings, known_hosts_id, split_host_port
from fleetctl.tunnel_http import tunnel_transport
from tests.api.certs import CertificateAuthority
from tests.ssh.conftest import SSHServer


def settings(server: SSHServer, known: Path, answer: str = "", strict: bool = True) -> SSHSettings:
    return SSHSettings(
        username="root",
        timeout=5.0,
        known_hosts_file=known,
        strict_host_key_checking=strict,
        identity_files=(server.client_key,),
        prompt_in=io.StringIO(answer),
        prompt_out=io.StringIO(),
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("10.0.0.1", ("10.0.0.1", 22), id="default-port"),
        pytest.param("10.0.0.1:2222", ("10.0.0.1", 2222), id="port"),
        pytest.param("[::1]:2200", ("::1", 2200), id="ipv6"),
        pytest.param("host.example", ("host.example", 22), id="name"),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


def test_known_hosts_id_omits_default_port() -> None:
    assert known_hosts_id("1.2.3.4", 22) == "1.2.3.4"
    assert known_hosts_id("1.2.3.4", 2222) == "[1.2.3.4]:2222"


def test_unknown_host_prompt_then_known_then_changed_key_refused(
    sshd: SSHServer, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    first = settings(sshd, known, answer="yes\n")
    with SSHConnection.open(sshd.address, first) as conn:
        assert conn.run("true") == 0
    prompt = first.prompt_out.getvalue()  # type: ignore[attr-defined]
    assert f"The authenticity of host '[127.0.0.1]:{sshd.port}' can't be established." in prompt
    assert "ED25519 key fingerprint is " in prompt
    assert "Warning: Permanently added" in prompt
    assert known.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")

    # Known now: no prompt, no answer needed.
    again = settings(sshd, known, answer="")
    with SSHConnection.open(sshd.address, again):
        pass
    assert again.prompt_out.getvalue() == ""  # type: ignore[attr-defined]

    # The machine is replaced: a new host key is refused, whatever the user would answer.
    sshd.new_host_key()
    with pytest.raises(HostKeyMismatch, match="REMOTE HOST IDENTIFICATION HAS CHANGED"):
        SSHConnection.open(sshd.address, settings(sshd, known, answer="yes\n"))
    assert len(known.read_text().splitlines()) == 1

    # After clearing the file the new key can be accepted again.
    known.write_text("")
    with SSHConnection.open(sshd.address, settings(sshd, known, answer="y\n")) as conn:
        assert conn.run("true") == 0


def test_unknown_host_declined(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(HostKeyUnknown):
        SSHConnection.open(sshd.address, settings(sshd, known, answer="no\n"))
    assert not known.exists()


def test_no_strict_checking_writes_nothing(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    with SSHConnection.open(sshd.address, settings(sshd, known, strict=False)) as conn:
        assert conn.run("true") == 0
    assert not known.exists()


def test_wrong_key_is_an_ssh_error(sshd: SSHServer, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    s = settings(sshd, tmp_path / "kh", strict=False)
    s = SSHSettings(**{**s.__dict__, "identity_files": (other,)})
    with pytest.raises(SSHError, match="authentication"):
        SSHConnection.open(sshd.address, s)


def test_remote_exit_status_and_output(sshd: SSHServer, tmp_path: Path) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    with SSHConnection.open(sshd.address, settings(sshd, tmp_path / "kh", strict=False)) as conn:
        status = conn.run("echo foo; echo bar >&2; exit 3", stdout=out, stderr=err)
    assert status == 3
    assert out.getvalue() == b"foo\n"
    assert err.getvalue() == b"bar\n"


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_tunnel_direct_tcpip_keeps_one_connection(
    sshd: SSHServer, tmp_path: Path, http_server: ThreadingHTTPServer
) -> None:
    port = http_server.server_address[1]

    async def fetch(conn: SSHConnection) -> list[str]:
        async with httpx.AsyncClient(transport=tunnel_transport(conn, uds=None)) as client:
            return [(await client.get(f"http://127.0.0.1:{port}/{i}")).text for i in range(20)]

    with SSHConnection.open(sshd.address, settings(sshd, tmp_path / "kh", strict=False)) as conn:
        texts = asyncio.run(fetch(conn))
        channels = len(conn.transport._channels.values())
    assert texts == [f"hello /{i}" for i in range(20)]
    assert channels <= 1


def test_tunnel_unix_socket_through_fd_forward(sshd: SSHServer, tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    server = ThreadingHTTPServer.__new__(ThreadingHTTPServer)

    class UnixHTTPServer(ThreadingHTTPServer):
        address_family = socket.AF_UNIX

        def server_bind(self) -> None:
            self.socket.bind(self.server_address)
            self.server_name, self.server_port = "fleet", 0

    server = UnixHTTPServer(str(path), _Hello)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    forward = f"{sys.executable} -m fleetctl fd-forward"

    async def fetch(conn: SSHConnection) -> list[str]:
        transport = tunnel_transport(conn, uds=str(path), fd_forward=forward)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as client:
            return [(await client.get(f"/u{i}")).text for i in range(5)]

    try:
        with SSHConnection.open(
            sshd.address, settings(sshd, tmp_path / "kh", strict=False)
        ) as conn:
            assert asyncio.run(fetch(conn)) == [f"hello /u{i}" for i in range(5)]
    finally:
        server.shutdown()
        server.server_close()


def test_known_hosts_ignores_hashed_and_marker_lines(tmp_path: Path) -> None:
    known = tmp_path / "kh"
    known.write_text("|1|abc|def ssh-ed25519 AAAA\n@cert-authority * ssh-ed25519 AAAA\n# c\n")
    assert list(KnownHosts(known)._entries()) == []


@pytest.mark.parametrize(
    ("trusted", "ok"),
    [pytest.param(True, True, id="trusted-ca"), pytest.param(False, False, id="unknown-ca")],
)
def test_tunnel_https_endpoint_speaks_tls_inside_the_channel(
    sshd: SSHServer, tmp_path: Path, trusted: bool, ok: bool
) -> None:
    ca = CertificateAuthority(tmp_path, "fleet-test-ca")
    other = CertificateAuthority(tmp_path, "other-ca")
    server_cert = ca.issue("server", server=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server_cert.cert, server_cert.key)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    client_context = ssl.create_default_context(cafile=str((ca if trusted else other).files.cert))

    async def fetch(conn: SSHConnection) -> list[str]:
        transport = tunnel_transport(conn, uds=None, ssl_context=client_context)
        async with httpx.AsyncClient(transport=transport) as client:
            return [(await client.get(f"https://127.0.0.1:{port}/s{i}")).text for i in range(3)]

    try:
        with SSHConnection.open(
            sshd.address, settings(sshd, tmp_path / "kh", strict=False)
        ) as conn:
            if ok:
                assert asyncio.run(fetch(conn)) == [f"hello /s{i}" for i in range(3)]
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    asyncio.run(fetch(conn))
    finally:
        server.shutdown()
        server.server_close()
