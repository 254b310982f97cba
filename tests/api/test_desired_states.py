"""``PATCH /fleet/v1/units`` (extension): several desired states in one write,
all or nothing, so the engine never judges a follower without its target."""

from __future__ import annotations

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from tests.api.support import served_api
from tests.api.test_units import EXEC, put
from tests.asyncsupport import async_test
from tests.registry.support import dump, mod_revisions

pytestmark = pytest.mark.etcd


@async_test
async def test_patch_sets_every_desired_state_in_one_revision(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        for name in ("a.service", "b.service", "c.service"):
            assert (await put(api, name, {"options": EXEC})).status_code == 201
        body = {"desiredStates": {"c.service": "launched", "a.service": "loaded"}}
        r = await api.client.patch("/fleet/v1/units", json=body)
        assert (r.status_code, r.content) == (204, b"")
        jobs = {n: await api.registry.get_job(n) for n in ("a.service", "b.service", "c.service")}
        assert {n: j.desired_state for n, j in jobs.items() if j} == {
            "a.service": DesiredState.LOADED,
            "b.service": DesiredState.INACTIVE,
            "c.service": DesiredState.LAUNCHED,
        }
        revisions = await mod_revisions(api.registry, "job/")
        assert revisions["job/a.service"] == revisions["job/c.service"]  # one transaction


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(
            {"desiredStates": {"a.service": "launched", "nothere.service": "launched"}},
            404,
            "unit nothere.service does not exist",
            id="one-missing",
        ),
        pytest.param(
            {"desiredStates": {"a.service": "launched", "t@.service": "launched"}},
            400,
            'cannot activate template "t@.service"',
            id="template",
        ),
        pytest.param(
            {"desiredStates": {"a.service": "running"}},
            400,
            'invalid desiredState "running"',
            id="bad-state",
        ),
        pytest.param(
            {"desiredStates": {"../x.service": "loaded"}}, 400, "invalid unit name", id="bad-name"
        ),
    ],
)
@async_test
async def test_a_refused_patch_writes_nothing(
    etcd: EtcdProcess, etcd_prefix: str, body: dict[str, dict[str, str]], status: int, message: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        assert (await put(api, "a.service", {"options": EXEC})).status_code == 201
        before = await dump(api.registry)
        r = await api.client.patch("/fleet/v1/units", json=body)
        assert r.status_code == status
        assert message in r.json()["error"]["message"]
        assert await dump(api.registry) == before
