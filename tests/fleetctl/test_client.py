"""Driver selection and endpoint handling (no cluster needed)."""

from __future__ import annotations

import asyncio

import pytest

from fleet.errors import FleetError, InvalidConfig
from fleetctl.client import ClientSettings, connect, resolve_driver


@pytest.mark.parametrize(
    ("driver", "endpoint", "expected", "warnings"),
    [
        pytest.param("api", "unix:///a.sock", "unix:///a.sock", [], id="api-one"),
        pytest.param(
            "API",
            "http://a:1, http://b:2",
            "http://a:1",
            ["WARNING: multiple endpoints provided but only the first (http://a:1) is used"],
            id="api-first-of-list-warns",
        ),
        pytest.param("Etcd", "http://a:1,http://b:2", "http://a:1,http://b:2", [], id="etcd-all"),
    ],
)
def test_resolve_driver(driver: str, endpoint: str, expected: str, warnings: list[str]) -> None:
    seen: list[str] = []
    settings = resolve_driver(ClientSettings(endpoint=endpoint, driver=driver), seen.append)
    assert (settings.driver, settings.endpoint, seen) == (driver.lower(), expected, warnings)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(ClientSettings(driver="grpc"), id="unknown-driver"),
        pytest.param(ClientSettings(endpoint=" , "), id="no-endpoint"),
    ],
)
def test_resolve_driver_rejects(settings: ClientSettings) -> None:
    with pytest.raises(InvalidConfig):
        resolve_driver(settings, print)


def test_missing_driver_module_is_a_clear_fleet_error() -> None:
    with pytest.raises(FleetError, match=r"fleetctl\.drivers\.nosuch is missing"):
        asyncio.run(connect(ClientSettings(driver="nosuch")))
