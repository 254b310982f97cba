"""What every fleetctl run pays before its first request: no CLI of httpx, no CA bundle
unless the endpoint is https (see docs/benchmarks.md, "fleetctl latency")."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from typing import Any

import pytest

from fleetctl.drivers.api import ApiClient


def spy_contexts(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Record every default TLS context built (httpx and fleetctl both use this call)."""
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def spy(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", spy)
    return made


PROBE = """
import sys
import fleetctl.cli, fleetctl.drivers.api, fleetctl.render
print(",".join(m for m in ("httpx._main", "rich", "pygments") if sys.modules.get(m)))
"""


def test_httpx_command_line_client_is_not_imported() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("unix:///var/run/fleet.sock", id="unix"),
        pytest.param("http://127.0.0.1:54728", id="http"),
    ],
)
def test_plain_endpoints_build_no_tls_context(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = spy_contexts(monkeypatch)
    client = ApiClient(endpoint, timeout=1.0)
    asyncio.run(client.aclose())
    assert loaded == []


def test_https_endpoint_still_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = spy_contexts(monkeypatch)
    client = ApiClient("https://127.0.0.1:54728", timeout=1.0)
    asyncio.run(client.aclose())
    assert len(loaded) == 1, "an https endpoint must build its verifying context"
