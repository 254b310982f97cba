"""``/``, ``/health`` and ``/ready`` against a real etcd (paused for the outage case)."""

from __future__ import annotations

from fleet.cluster.etcd import EtcdProcess
from tests.api.support import MACHINE_ID, VERSION, served_api
from tests.asyncsupport import async_test


@async_test
async def test_index_names_the_endpoints(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.get("/")
        assert r.status_code == 200
        body = r.json()
        assert body["version"] == VERSION
        assert body["machineID"] == MACHINE_ID
        for path in body["links"].values():
            probe = await api.client.get(path)
            assert probe.status_code == 200, path


@async_test
async def test_health_is_liveness_only(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, ready=False) as api:
        r = await api.client.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "version": VERSION, "machineID": MACHINE_ID}
        etcd.pause()
        try:
            during = await api.client.get("/health")
        finally:
            etcd.resume()
        assert during.status_code == 200


@async_test
async def test_ready_needs_registration_and_etcd(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, ready=False) as api:
        before = await api.client.get("/ready")
        assert before.status_code == 503
        assert before.json()["registered"] is False
        assert before.json()["etcd"] is True
        assert "not registered" in before.json()["detail"]

        api.ready.value = True
        ready = await api.client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "registered": True,
            "etcd": True,
            "machineID": MACHINE_ID,
        }

        etcd.pause()
        try:
            outage = await api.client.get("/ready")
        finally:
            etcd.resume()
        assert outage.status_code == 503
        assert outage.json()["ready"] is False
        assert outage.json()["etcd"] is False
        assert outage.json()["detail"]
