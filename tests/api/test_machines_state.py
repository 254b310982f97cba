"""``/fleet/v1/machines`` (list, PATCH metadata) and ``/fleet/v1/state``."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.api.schema import PageToken
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import Machine, UnitState
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.registry.support import dump

M1 = "1" * 32
M2 = "2" * 32
BAD = "machine metadata path invalid"


async def machines(api: Any) -> dict[str, dict[str, str]]:
    r = await api.client.get("/fleet/v1/machines")
    assert r.status_code == 200
    return {m["id"]: m.get("metadata", {}) for m in r.json().get("machines", [])}


@async_test
async def test_machines_list_shape_and_pagination(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, token_limit=1) as api:
        await api.registry.register_machine(Machine(M2, "10.0.0.2", {"az": "b"}), ttl=10)
        await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=10)
        first = await api.client.get("/fleet/v1/machines")
        assert first.json()["machines"] == [{"id": M1, "primaryIP": "10.0.0.1"}]
        token = PageToken.decode(first.json()["nextPageToken"], 1)
        assert (token.limit, token.page) == (1, 2)
        assert token.revision > 0  # the second page reads the first one's snapshot
        second = await api.client.get(
            "/fleet/v1/machines", params={"nextPageToken": first.json()["nextPageToken"]}
        )
        assert second.json() == {
            "machines": [{"id": M2, "primaryIP": "10.0.0.2", "metadata": {"az": "b"}}]
        }


@async_test
async def test_machines_list_bad_next_page_token(etcd: EtcdProcess, etcd_prefix: str) -> None:
    # fleet's TestMachinesListBadNextPageToken.
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.get("/fleet/v1/machines", params={"nextPageToken": "EwBMLg=="})
        assert r.status_code == 400
        assert r.json()["error"] == {"code": 400, "message": "token limit must be 100"}


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda v: {"value": v}, id="object-value"),
        pytest.param(lambda v: v, id="bare-value"),
    ],
)
def test_machines_patch_add_modify(etcd: EtcdProcess, etcd_prefix: str, wrap: Any) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1", {"role": "db"}), ttl=10)
            r = await api.client.patch(
                "/fleet/v1/machines",
                json=[
                    {"op": "add", "path": f"/{M1}/metadata/foo", "value": wrap("bar")},
                    {"op": "add", "path": f"/{M1}/metadata/ping", "value": wrap("pong")},
                    {"op": "replace", "path": f"/{M1}/metadata/foo", "value": wrap("baz")},
                    {"op": "replace", "path": f"/{M1}/metadata/role", "value": wrap("web")},
                ],
            )
            assert (r.status_code, r.content) == (204, b"")
            assert (await machines(api))[M1] == {"foo": "baz", "ping": "pong", "role": "web"}

    run()


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda v: {"value": v}, id="object-value"),
        pytest.param(lambda v: v, id="bare-value"),
    ],
)
def test_machines_patch_delete(etcd: EtcdProcess, etcd_prefix: str, wrap: Any) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1", {"role": "db"}), ttl=10)
            add = await api.client.patch(
                "/fleet/v1/machines",
                json=[{"op": "add", "path": f"/{M1}/metadata/foo", "value": wrap("bar")}],
            )
            assert add.status_code == 204
            r = await api.client.patch(
                "/fleet/v1/machines",
                json=[
                    {"op": "remove", "path": f"/{M1}/metadata/foo"},
                    # A key from the machine's own config is hidden too (fleet's tombstone).
                    {"op": "remove", "path": f"/{M1}/metadata/role"},
                ],
            )
            assert r.status_code == 204
            assert (await machines(api))[M1] == {}

    run()


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        pytest.param(
            [{"op": "noop", "path": f"/{M1}/metadata/foo", "value": "x"}],
            "invalid op: expect add, remove, or replace",
            id="bad-op",
        ),
        pytest.param(
            [{"op": "add", "path": f"/{M1}/foo", "value": {"value": "x"}}], BAD, id="bad-path"
        ),
        pytest.param(
            [{"op": "add", "path": f"/{M1}/metadata/a/b", "value": "x"}], BAD, id="nested-key"
        ),
        pytest.param(
            [{"op": "add", "path": f"/{M1}/metadata/b@d", "value": "x"}], BAD, id="key-chars"
        ),
        pytest.param(
            [{"op": "add", "path": f"/{M1}/metadata/foo"}],
            "invalid value: add and replace require a value",
            id="add-without-value",
        ),
        pytest.param(
            [{"op": "replace", "path": f"/{M1}/metadata/foo", "value": {"value": ""}}],
            "invalid value: add and replace require a value",
            id="replace-empty-object-value",
        ),
        pytest.param(
            [{"op": "add", "path": f"/{M1}/metadata/foo", "value": ""}],
            "invalid value: add and replace require a value",
            id="add-empty-bare-value",
        ),
        pytest.param(
            [
                {"op": "add", "path": f"/{M1}/metadata/good", "value": "x"},
                {"op": "add", "path": "/metadata/", "value": "y"},
            ],
            BAD,
            id="good-then-bad-writes-nothing",
        ),
    ],
)
def test_machines_patch_bad(
    etcd: EtcdProcess, etcd_prefix: str, ops: list[Any], message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=10)
            before = await dump(api.registry)
            r = await api.client.patch("/fleet/v1/machines", json=ops)
            assert r.status_code == 400
            assert r.json() == {"error": {"code": 400, "message": message}}
            after = await dump(api.registry)
            assert after == before

    run()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{}", id="object"),
        pytest.param(b"[1]", id="number-op"),
        pytest.param(b'[{"op":"add","path":"/m/metadata/k","value":3}]', id="number-value"),
        pytest.param(b"nope", id="not-json"),
    ],
)
def test_machines_patch_malformed_body(etcd: EtcdProcess, etcd_prefix: str, raw: bytes) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await api.client.patch(
                "/fleet/v1/machines", content=raw, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400
            assert r.json()["error"]["code"] == 400

    run()


@async_test
async def test_patch_unregistered_machine_is_allowed(etcd: EtcdProcess, etcd_prefix: str) -> None:
    # fleet does not require the machine to be registered: metadata waits for it.
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.patch(
            "/fleet/v1/machines",
            json=[{"op": "add", "path": f"/{M2}/metadata/az", "value": {"value": "c"}}],
        )
        assert r.status_code == 204
        await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=10)
        assert (await machines(api))[M2] == {"az": "c"}


def _state(name: str, machine: str, sub: str = "running") -> UnitState:
    return UnitState(name, machine, "loaded", "active", sub, "f" * 40)


async def _publish(api: Any) -> None:
    lease1 = await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=10)
    lease2 = await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=10)
    await api.registry.publish_unit_state(lease2, _state("a.service", M2, "exited"))
    await api.registry.publish_unit_state(lease1, _state("a.service", M1))
    await api.registry.publish_unit_state(lease1, _state("b.service", M1))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({}, [("a.service", M1), ("a.service", M2), ("b.service", M1)], id="all"),
        pytest.param({"machineID": M1}, [("a.service", M1), ("b.service", M1)], id="machine"),
        pytest.param({"unitName": "a.service"}, [("a.service", M1), ("a.service", M2)], id="unit"),
        pytest.param({"machineID": M2, "unitName": "a.service"}, [("a.service", M2)], id="both"),
        pytest.param({"machineID": M1[:8]}, [], id="short-id-is-not-exact"),
    ],
)
def test_state_list_filters(
    etcd: EtcdProcess, etcd_prefix: str, params: dict[str, str], expected: list[Any]
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await _publish(api)
            r = await api.client.get("/fleet/v1/state", params=params)
            assert r.status_code == 200
            states = r.json().get("states", [])
            assert [(s["name"], s["machineID"]) for s in states] == expected

    run()


@async_test
async def test_state_entity_shape(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await _publish(api)
        r = await api.client.get("/fleet/v1/state", params={"machineID": M2})
        assert r.json() == {
            "states": [
                {
                    "name": "a.service",
                    "hash": "f" * 40,
                    "machineID": M2,
                    "systemdLoadState": "loaded",
                    "systemdActiveState": "active",
                    "systemdSubState": "exited",
                }
            ]
        }


@async_test
async def test_state_item_first_match_or_404(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await _publish(api)
        r = await api.client.get("/fleet/v1/state/a.service")
        assert r.status_code == 200
        assert (r.json()["name"], r.json()["machineID"]) == ("a.service", M1)
        missing = await api.client.get("/fleet/v1/state/c.service")
        assert missing.status_code == 404
        assert missing.json() == {"error": {"code": 404, "message": "unit state does not exist"}}


@async_test
async def test_state_pagination(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, token_limit=2) as api:
        await _publish(api)
        first = await api.client.get("/fleet/v1/state")
        assert len(first.json()["states"]) == 2
        token = first.json()["nextPageToken"]
        second = await api.client.get("/fleet/v1/state", params={"nextPageToken": token})
        assert [s["name"] for s in second.json()["states"]] == ["b.service"]
        assert "nextPageToken" not in second.json()
