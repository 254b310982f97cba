"""HTTP-level behaviour shared by every route: envelope, headers, readiness,
405/404, discovery, metrics, and the unix socket itself."""

from __future__ import annotations

import os
import stat

import httpx
import pytest

from fleet.api.app import create_app
from fleet.api.server import close_listeners, open_listeners
from fleet.cluster.etcd import EtcdProcess
from tests.api.support import (
    VERSION,
    served_api,
    serving,
    short_tmpdir,
    wait_listening,
)
from tests.asyncsupport import async_test

ETCD_DOWN = {"error": {"code": 503, "message": "fleet server unable to communicate with etcd"}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/fleet/v1/units", id="units"),
        pytest.param("GET", "/fleet/v1/units/a.service", id="unit"),
        pytest.param("PUT", "/fleet/v1/units/a.service", id="put"),
        pytest.param("DELETE", "/fleet/v1/units/a.service", id="delete"),
        pytest.param("GET", "/fleet/v1/state", id="state"),
        pytest.param("GET", "/fleet/v1/machines", id="machines"),
        pytest.param("PATCH", "/fleet/v1/machines", id="patch"),
        pytest.param("GET", "/fleet/v1/discovery", id="discovery"),
        pytest.param("GET", "/v1-alpha/units", id="alpha"),
    ],
)
def test_503_until_ready(etcd: EtcdProcess, etcd_prefix: str, method: str, path: str) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix, ready=False) as api:
            r = await api.client.request(method, path, json=[])
            assert r.status_code == 503
            assert r.json() == ETCD_DOWN
            assert r.headers["server"] == f"fleetd/{VERSION}"
            api.ready.value = True
            after = await api.client.get("/fleet/v1/units")
            assert after.status_code == 200

    run()


@async_test
async def test_metrics_served_while_not_ready(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, ready=False) as api:
        r = await api.client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")


@async_test
async def test_store_unavailable_is_503(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        etcd.pause()
        try:
            r = await api.client.get("/fleet/v1/units")
        finally:
            etcd.resume()
        assert r.status_code == 503
        assert r.json() == ETCD_DOWN


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        pytest.param("PUT", "/", 405, "only requests against /fleet/v1 are supported", id="root"),
        pytest.param("GET", "/fleet/v1/nope", 404, "resource not found", id="unknown"),
        pytest.param("GET", "/nope", 404, "resource not found", id="unknown-top"),
        pytest.param(
            "POST",
            "/fleet/v1/units/a.service",
            405,
            "only GET, PUT and DELETE supported against this resource",
            id="post-unit",
        ),
        pytest.param(
            # PATCH /units is our extension (several desired states in one write).
            "POST",
            "/fleet/v1/units",
            405,
            "only GET and PATCH supported against this resource",
            id="units",
        ),
        pytest.param(
            "DELETE",
            "/fleet/v1/machines",
            405,
            "only GET and PATCH supported against this resource",
            id="machines",
        ),
        pytest.param(
            "PUT", "/fleet/v1/state", 405, "only GET supported against this resource", id="state"
        ),
        pytest.param(
            "POST",
            "/fleet/v1/discovery",
            400,
            "only GET supported against this resource",
            id="discovery-post",
        ),
    ],
)
def test_error_envelope_for_framework_errors(
    etcd: EtcdProcess, etcd_prefix: str, *, method: str, path: str, status: int, message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await api.client.request(method, path)
            assert r.status_code == status
            assert r.json() == {"error": {"code": status, "message": message}}
            assert r.headers["content-type"] == "application/json"
            assert r.headers["server"] == f"fleetd/{VERSION}"

    run()


@async_test
async def test_every_response_has_server_and_json_headers(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        for method, path in [
            ("GET", "/fleet/v1/units"),
            ("GET", "/fleet/v1/machines"),
            ("GET", "/fleet/v1/state"),
            ("DELETE", "/fleet/v1/units/x.service"),
        ]:
            r = await api.client.request(method, path)
            assert r.headers["server"] == f"fleetd/{VERSION}", path
            assert r.headers["content-type"] == "application/json", path
            assert "uvicorn" not in r.headers.get("server", "")


@async_test
async def test_discovery_document(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.get("/fleet/v1/discovery")
        assert r.status_code == 200
        doc = r.json()
        assert doc["id"] == "fleet:v1"
        assert doc["rootUrl"] == "$ENDPOINT/"
        assert doc["servicePath"] == "fleet/v1/"
        methods = {
            (m["httpMethod"], m["path"])
            for resource in doc["resources"].values()
            for m in resource["methods"].values()
        }
        assert methods == {
            ("GET", "units"),
            ("GET", "units/{unitName}"),
            ("PUT", "units/{unitName}"),
            ("DELETE", "units/{unitName}"),
            ("GET", "state"),
            ("GET", "state/{unitName}"),
            ("GET", "machines"),
            ("PATCH", "machines"),
        }
        for schema in doc["schemas"].values():  # every $ref resolves
            for prop in schema["properties"].values():
                ref = prop.get("items", {}).get("$ref")
                assert ref is None or ref in doc["schemas"]


@async_test
async def test_metrics_has_fleet_names_and_counts_requests(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await api.client.get("/fleet/v1/units")
        await api.client.get("/fleet/v1/units/nope.service")
        api.metrics.engine_task("ScheduleUnit", failed=True)
        with api.metrics.time_registry_operation("get"):
            pass
        text = (await api.client.get("/metrics")).text
        for name in (
            "fleet_engine_leader_start_time",
            "fleet_engine_task_count_total",
            "fleet_engine_task_failure_count_total",
            "fleet_engine_reconcile_count_total",
            "fleet_engine_reconcile_duration_second",
            "fleet_engine_reconcile_failure_count_total",
            "fleet_registry_operation_count_total",
            "fleet_registry_operation_failed_count_total",
            "fleet_registry_operation_duration_second",
        ):
            assert f"# TYPE {name.removesuffix('_total')}" in text, name
        assert (
            'fleet_api_request_count_total{method="GET",route="/fleet/v1/units",status="200"} 1.0'
            in text
        )
        assert (
            'fleet_api_request_count_total{method="GET",route="/fleet/v1/units/{name:anytext}",'
            'status="404"} 1.0' in text
        )
        assert 'fleet_engine_task_failure_count_total{type="ScheduleUnit"} 1.0' in text
        assert 'fleet_registry_operation_count_total{operation="get"} 1.0' in text


@async_test
async def test_unix_socket_mode_is_0660(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        mode = os.stat(api.socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        r = await api.client.get("/fleet/v1/units")
        assert r.status_code == 200


class _BrokenRegistry:
    """Stands in for a registry with a bug: the API must still answer in its envelope."""

    async def list_jobs(self) -> list[object]:
        raise RuntimeError("bug")


@async_test
async def test_a_bug_is_a_500_envelope_with_empty_message() -> None:
    with short_tmpdir() as tmp:
        app = create_app(_BrokenRegistry(), machine_id="m", version=VERSION)  # type: ignore[arg-type]
        path = str(tmp / "fleet.sock")
        listeners = open_listeners(unix_path=path, listen_fds=[])
        try:
            async with serving(app, listeners):
                await wait_listening(path)
                transport = httpx.AsyncHTTPTransport(uds=path)
                async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                    r = await client.get("/fleet/v1/units")
                    assert r.status_code == 500
                    assert r.json() == {"error": {"code": 500, "message": ""}}
                    assert r.headers["server"] == f"fleetd/{VERSION}"
                    # The server survives its bug.
                    assert (await client.get("/metrics")).status_code == 200
        finally:
            close_listeners(listeners)
