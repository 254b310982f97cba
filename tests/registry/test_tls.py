"""TLS to etcd with a client certificate (B11): accepted with the right
credentials, refused without them, never silently downgraded."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.cluster.etcd import free_port
from fleet.errors import StoreUnavailable, Timeout
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import async_test
from tests.functional.cluster import wait_for
from tests.registry.support import dump


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _sign(name: str, subject: str, usage: str, cwd: Path, san: str = "") -> None:
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=cwd,
    )
    (cwd / f"{name}.ext").write_text(f"{san}extendedKeyUsage={usage}\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "1",
        "-extfile",
        f"{name}.ext",
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An etcd that serves only TLS and demands a client certificate."""
    pki = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=fleet-test-ca",
        cwd=pki,
    )
    _sign("server", "/CN=127.0.0.1", "serverAuth", pki, "subjectAltName=IP:127.0.0.1\n")
    _sign("client", "/CN=fleet", "clientAuth", pki)
    port, peer = free_port(), free_port()
    endpoint = f"https://127.0.0.1:{port}"
    binary = shutil.which("etcd")
    assert binary is not None
    proc = subprocess.Popen(
        [
            binary,
            "--name=tls",
            f"--data-dir={pki / 'data'}",
            f"--listen-client-urls={endpoint}",
            f"--advertise-client-urls={endpoint}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=tls=http://127.0.0.1:{peer}",
            "--cert-file=server.crt",
            "--key-file=server.key",
            "--client-cert-auth",
            "--trusted-ca-file=ca.crt",
            "--logger=zap",
            "--log-level=error",
            "--heartbeat-interval=10",
            "--election-timeout=100",
        ],
        cwd=pki,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_healthy(endpoint, pki, proc)
        yield endpoint, pki
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_healthy(endpoint: str, pki: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until etcd answers /health over TLS with our client certificate: a listening
    port alone is not a server that completes handshakes yet."""
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))

    def healthy() -> bool:
        assert proc.poll() is None, "etcd exited"
        try:
            with urllib.request.urlopen(f"{endpoint}/health", timeout=1, context=context) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    try:
        wait_for(healthy, 20, interval=0.02, what="TLS etcd's /health")
    except Timeout as exc:
        raise AssertionError("TLS etcd did not become healthy") from exc


@async_test
async def test_client_certificate_is_accepted(tls_etcd: tuple[str, Path]) -> None:
    endpoint, pki = tls_etcd
    async with await EtcdRegistry.connect(
        [endpoint],
        "/tls/",
        ca_file=str(pki / "ca.crt"),
        cert_file=str(pki / "client.crt"),
        key_file=str(pki / "client.key"),
    ) as reg:
        await reg.set_machine_metadata("m1", "k", "v")
        assert await dump(reg, "machine-metadata/") == {
            "machine-metadata/m1/k": b'{"v":1,"value":"v"}'
        }


@pytest.mark.parametrize(
    ("scheme", "with_ca"),
    [("https", True), ("https", False), ("http", True)],
    ids=["no-client-cert", "unknown-ca", "plaintext"],
)
@async_test
async def test_missing_credentials_are_refused(
    tls_etcd: tuple[str, Path], scheme: str, with_ca: bool
) -> None:
    endpoint, pki = tls_etcd
    endpoint = endpoint.replace("https", scheme)
    ca = str(pki / "ca.crt") if with_ca else None
    with pytest.raises(StoreUnavailable, match=f"cannot reach etcd at {endpoint}"):
        await EtcdRegistry.connect([endpoint], ca_file=ca, request_timeout=1.0)
