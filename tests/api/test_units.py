"""``/fleet/v1/units``: fleet-reference.md §4.5, one test per row/behaviour."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.api.schema import PageToken
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job, PlacementReason
from fleet.core.unitfile import UnitFile
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.registry.support import dump

EXEC = [{"section": "Service", "name": "ExecStart", "value": "/bin/sleep 1000"}]
OTHER = [{"section": "Service", "name": "ExecStart", "value": "/bin/sleep 2000"}]
JSON = {"Content-Type": "application/json"}


def body_of(options: list[dict[str, str]]) -> UnitFile:
    return UnitFile.parse("".join(f"[{o['section']}]\n{o['name']}={o['value']}\n" for o in options))


async def put(api: Any, name: str, payload: dict[str, Any]) -> Any:
    return await api.client.put(f"/fleet/v1/units/{name}", json=payload)


@async_test
async def test_put_new_unit_creates_it_with_201(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await put(api, "a.service", {"desiredState": "launched", "options": EXEC})
        assert r.status_code == 201
        assert r.content == b""
        unit = body_of(EXEC)
        assert await api.registry.get_job("a.service") == Job(
            "a.service", unit.hash, DesiredState.LAUNCHED
        )
        assert await api.registry.get_unit_body(unit.hash) == unit.serialize()


@async_test
async def test_put_new_unit_defaults_to_inactive(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        assert (await put(api, "a.service", {"options": EXEC})).status_code == 201
        job = await api.registry.get_job("a.service")
        assert job is not None
        assert job.desired_state is DesiredState.INACTIVE


@async_test
async def test_get_unit_returns_fleet_shape_without_empty_fields(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await put(api, "a.service", {"desiredState": "loaded", "options": EXEC})
        r = await api.client.get("/fleet/v1/units/a.service")
        assert r.status_code == 200
        assert r.json() == {
            "name": "a.service",
            "options": EXEC,
            "desiredState": "loaded",
            "currentState": "inactive",
        }


@async_test
async def test_get_unknown_unit_is_404(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.get("/fleet/v1/units/nope.service")
        assert r.status_code == 404
        assert r.json() == {"error": {"code": 404, "message": "unit does not exist"}}


@async_test
async def test_list_units_sorted_with_schedule_and_reason(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        for name in ("b.service", "a.service", "c.service"):
            await put(api, name, {"desiredState": "launched", "options": EXEC})
        from fleet.ports import ScheduleChange

        leader = await api.registry.campaign("m1", "1", 10.0)
        assert leader is not None
        unit = body_of(EXEC)
        await api.registry.apply_schedule(
            leader,
            [ScheduleChange("a.service", "m1", unit.hash, DesiredState.LAUNCHED)],
            {"c.service": PlacementReason("no machine has metadata az=x")},
        )
        r = await api.client.get("/fleet/v1/units")
        assert r.status_code == 200
        units = r.json()["units"]
        assert [u["name"] for u in units] == ["a.service", "b.service", "c.service"]
        assert units[0]["machineID"] == "m1"
        assert "machineID" not in units[1]
        assert units[2]["reason"] == "no machine has metadata az=x"
        assert "nextPageToken" not in r.json()


@async_test
async def test_empty_unit_list_is_an_empty_object(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.get("/fleet/v1/units")
        assert (r.status_code, r.json()) == (200, {})


@async_test
async def test_units_pagination_walks_every_page(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, token_limit=2) as api:
        names = [f"u{i}.service" for i in range(5)]
        for name in names:
            await put(api, name, {"options": EXEC})
        seen: list[str] = []
        tokens: list[str] = []
        params: dict[str, str] = {}
        while True:
            r = await api.client.get("/fleet/v1/units", params=params)
            assert r.status_code == 200
            seen += [u["name"] for u in r.json()["units"]]
            token = r.json().get("nextPageToken")
            if token is None:
                break
            tokens.append(token)
            params = {"nextPageToken": token}
        assert seen == names
        decoded = [PageToken.decode(t, 2) for t in tokens]
        assert [(t.limit, t.page) for t in decoded] == [(2, 2), (2, 3)]
        # Every page after the first reads the snapshot the first one read.
        assert len({t.revision for t in decoded}) == 1


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("EwBMLg==", "token limit must be 100", id="fleet-bad-limit"),
        pytest.param(
            PageToken(100, 0).encode(), "token page must be greater than zero", id="page0"
        ),
        pytest.param("%%%", "invalid page token: not URL-safe base64", id="not-base64"),
        pytest.param("ZQ==", "invalid page token: expected 4 or 12 bytes, got 1", id="short"),
        pytest.param(
            "ZAACAAAAAAAAAAAA",
            "token revision must be greater than zero",
            id="revision0",
        ),
    ],
)
def test_bad_page_token_is_400(
    etcd: EtcdProcess, etcd_prefix: str, token: str, message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            for path in ("/fleet/v1/units", "/fleet/v1/machines", "/fleet/v1/state"):
                r = await api.client.get(path, params={"nextPageToken": token})
                assert r.status_code == 400, path
                assert r.json() == {"error": {"code": 400, "message": message}}

    run()


@async_test
async def test_put_existing_same_options_sets_desired_state_204(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await put(api, "a.service", {"desiredState": "loaded", "options": EXEC})
        r = await put(api, "a.service", {"desiredState": "launched", "options": EXEC})
        assert r.status_code == 204
        job = await api.registry.get_job("a.service")
        assert job is not None
        assert job.desired_state is DesiredState.LAUNCHED


@async_test
async def test_put_existing_without_options_sets_desired_state_204(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await put(api, "a.service", {"options": EXEC})
        r = await put(api, "a.service", {"desiredState": "loaded"})
        assert r.status_code == 204
        job = await api.registry.get_job("a.service")
        assert job is not None
        assert job.desired_state is DesiredState.LOADED


@async_test
async def test_put_existing_with_new_options_replaces_201(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await put(api, "a.service", {"desiredState": "launched", "options": EXEC})
        r = await put(api, "a.service", {"desiredState": "launched", "options": OTHER})
        assert r.status_code == 201
        job = await api.registry.get_job("a.service")
        assert job == Job("a.service", body_of(OTHER).hash, DesiredState.LAUNCHED)


@pytest.mark.parametrize(
    ("setup", "payload", "status", "message"),
    [
        pytest.param(
            False,
            {"desiredState": "launched"},
            409,
            "unit does not exist and options field empty",
            id="new-without-options",
        ),
        pytest.param(
            False,
            {"desiredState": "launched", "options": []},
            409,
            "unit does not exist and options field empty",
            id="new-with-empty-options",
        ),
        pytest.param(
            True,
            {"options": EXEC},
            409,
            "must provide DesiredState to update existing unit",
            id="existing-without-desired-state",
        ),
        pytest.param(
            True,
            {},
            409,
            "must provide DesiredState to update existing unit",
            id="existing-empty-body",
        ),
        pytest.param(
            False,
            {"name": "b.service", "options": EXEC},
            400,
            'name in URL "a.service" differs from unit name in request body "b.service"',
            id="name-mismatch",
        ),
        pytest.param(
            False,
            {"desiredState": "running", "options": EXEC},
            400,
            'invalid desiredState "running": expect inactive, loaded or launched',
            id="bad-desired-state-new",
        ),
        pytest.param(
            True,
            {"desiredState": "running"},
            400,
            'invalid desiredState "running": expect inactive, loaded or launched',
            id="bad-desired-state-existing",
        ),
        pytest.param(
            False,
            {"options": [{"section": "", "name": "ExecStart", "value": "x"}]},
            400,
            "invalid unit file option: empty section name",
            id="option-empty-section",
        ),
        pytest.param(
            False,
            {"options": [{"section": "Service", "name": "ExecStart", "value": "a\nb"}]},
            400,
            "invalid unit file option: value of ExecStart contains a ",
            id="option-newline",
        ),
        pytest.param(
            False,
            {"options": [{"section": "Service", "name": "X", "value": 5}]},
            400,
            "invalid request: options.0.value: Input should be a valid string",
            id="option-not-a-string",
        ),
        pytest.param(
            False,
            {"desiredState": 3, "options": EXEC},
            400,
            "invalid request: desiredState: Input should be a valid string",
            id="desired-not-a-string",
        ),
    ],
)
def test_put_refusals(
    etcd: EtcdProcess,
    etcd_prefix: str,
    *,
    setup: bool,
    payload: dict[str, Any],
    status: int,
    message: str,
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            if setup:
                await put(api, "a.service", {"desiredState": "loaded", "options": EXEC})
            before = await dump(api.registry)
            r = await put(api, "a.service", payload)
            assert r.status_code == status
            error = r.json()["error"]
            assert error["code"] == status
            # Messages from the unit-file parser are checked by their stable beginning.
            assert error["message"].startswith(message), error["message"]
            after = await dump(api.registry)
            assert after == before  # nothing written

    run()


@async_test
async def test_put_invalid_requirements_is_400(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        options = [
            *EXEC,
            {"section": "X-Fleet", "name": "MachineID", "value": "abc"},
            {"section": "X-Fleet", "name": "Global", "value": "true"},
        ]
        r = await put(api, "a.service", {"options": options})
        assert r.status_code == 400
        assert "Global" in r.json()["error"]["message"]
        assert await api.registry.get_job("a.service") is None


@pytest.mark.parametrize(
    ("desired", "status"),
    [
        pytest.param("inactive", 201, id="inactive-allowed"),
        pytest.param("loaded", 400, id="loaded-refused"),
        pytest.param("launched", 400, id="launched-refused"),
    ],
)
def test_template_activation(
    etcd: EtcdProcess, etcd_prefix: str, desired: str, status: int
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await put(api, "foo@.service", {"desiredState": desired, "options": EXEC})
            assert r.status_code == status
            if status == 400:
                assert r.json()["error"]["message"] == 'cannot activate template "foo@.service"'
                assert await api.registry.get_job("foo@.service") is None
            else:
                update = await put(api, "foo@.service", {"desiredState": "launched"})
                assert update.status_code == 400
                job = await api.registry.get_job("foo@.service")
                assert job is not None
                assert job.desired_state is DesiredState.INACTIVE

    run()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Content-Type": "application/json"}, 201, id="json"),
        pytest.param({"Content-Type": "application/json; charset=utf-8"}, 201, id="with-params"),
        pytest.param({"Content-Type": "text/plain"}, 415, id="text-plain"),
        pytest.param({"Content-Type": "application/jsonx"}, 415, id="near-miss"),
        pytest.param({}, 415, id="missing"),
        pytest.param([("Content-Type", _j) for _j in ["application/json"] * 2], 415, id="twice"),
    ],
)
def test_put_content_type(etcd: EtcdProcess, etcd_prefix: str, headers: Any, status: int) -> None:
    import json

    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await api.client.put(
                "/fleet/v1/units/a.service",
                content=json.dumps({"options": EXEC}).encode(),
                headers=headers,
            )
            assert r.status_code == status
            if status == 415:
                assert r.json()["error"]["code"] == 415
                assert await api.registry.get_job("a.service") is None

    run()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{", id="truncated"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"x"', id="string"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"", id="empty"),
    ],
)
def test_put_bad_json_is_400(etcd: EtcdProcess, etcd_prefix: str, raw: bytes) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await api.client.put("/fleet/v1/units/a.service", content=raw, headers=JSON)
            assert r.status_code == 400
            assert r.json()["error"]["code"] == 400
            assert r.json()["error"]["message"]

    run()


@async_test
async def test_delete_unit_204_then_404(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        await put(api, "a.service", {"options": EXEC})
        r = await api.client.delete("/fleet/v1/units/a.service")
        assert (r.status_code, r.content) == (204, b"")
        assert await api.registry.get_job("a.service") is None
        again = await api.client.delete("/fleet/v1/units/a.service")
        assert again.status_code == 404
        assert again.json() == {"error": {"code": 404, "message": "unit does not exist"}}


@async_test
async def test_v1_alpha_mount_serves_the_same_api(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.put(
            "/v1-alpha/units/a.service", json={"desiredState": "loaded", "options": EXEC}
        )
        assert r.status_code == 201
        got = await api.client.get("/fleet/v1/units/a.service")
        assert got.json()["desiredState"] == "loaded"
        alpha = await api.client.get("/v1-alpha/units")
        assert [u["name"] for u in alpha.json()["units"]] == ["a.service"]
