"""Paged listings are one etcd snapshot (``fleet.api.listing``), built once per listing.

Against the real API and a real etcd: writes between two pages change nothing in
the listing, a compacted revision ends it with 410, the etcd reads of a whole
listing do not grow with pages x units, and each unit body is parsed once.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleet.api.schema import PageToken
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import Machine, UnitState
from fleet.core.unitfile import UnitFile
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.registry.support import compact, current_revision

M1 = "1" * 32


def options(seconds: int) -> list[dict[str, str]]:
    return [{"section": "Service", "name": "ExecStart", "value": f"/bin/sleep {seconds}"}]


async def put(api: Any, name: str, seconds: int = 1000) -> None:
    r = await api.client.put(f"/fleet/v1/units/{name}", json={"options": options(seconds)})
    assert r.status_code == 201, r.text


async def page(api: Any, path: str, token: str | None = None) -> tuple[list[Any], str | None]:
    params = {"nextPageToken": token} if token else {}
    r = await api.client.get(path, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    key = {"units": "units", "state": "states", "machines": "machines"}[path.rsplit("/", 1)[-1]]
    return body.get(key, []), body.get("nextPageToken")


async def walk(api: Any, path: str, token: str | None = None) -> list[Any]:
    items: list[Any] = []
    while True:
        got, token = await page(api, path, token)
        items += got
        if token is None:
            return items


@async_test
async def test_unit_pages_are_the_first_pages_snapshot(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, token_limit=2) as api:
        names = [f"u{i}.service" for i in range(6)]
        for name in names:
            await put(api, name)
        first, token = await page(api, "/fleet/v1/units")
        assert [u["name"] for u in first] == names[:2]
        # Between pages: a unit that sorts first, one in the middle, one destroyed,
        # and one whose desired state changes.
        await put(api, "a.service")
        await put(api, "u2a.service")
        assert (await api.client.delete("/fleet/v1/units/u4.service")).status_code == 204
        r = await api.client.put("/fleet/v1/units/u5.service", json={"desiredState": "loaded"})
        assert r.status_code == 204
        rest = await walk(api, "/fleet/v1/units", token)
        assert [u["name"] for u in first + rest] == names
        assert rest[-1]["desiredState"] == "inactive"  # as it was at the first page
        # A new listing is a new snapshot.
        now = [u["name"] for u in await walk(api, "/fleet/v1/units")]
        assert now == ["a.service", *names[:3], "u2a.service", "u3.service", "u5.service"]


@async_test
async def test_state_and_machine_pages_are_one_snapshot(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix, token_limit=1) as api:
        lease = await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=30)
        for name in ("b.service", "c.service"):
            await api.registry.publish_unit_state(
                lease, UnitState(name, M1, "loaded", "active", "running", "f" * 40)
            )
        states, token = await page(api, "/fleet/v1/state")
        machines, machine_token = await page(api, "/fleet/v1/machines")
        assert machine_token is None
        await api.registry.publish_unit_state(
            lease, UnitState("a.service", M1, "loaded", "active", "running", "f" * 40)
        )
        states += await walk(api, "/fleet/v1/state", token)
        assert [s["name"] for s in states] == ["b.service", "c.service"]
        assert [m["id"] for m in machines] == [M1]


@async_test
async def test_a_compacted_listing_is_410_gone(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, token_limit=1) as api:
        await put(api, "a.service")
        await put(api, "b.service")
        _, token = await page(api, "/fleet/v1/units")
        assert token is not None
        await put(api, "c.service")
        await compact(api.registry, await current_revision(api.registry))
        for path in ("/fleet/v1/units", "/fleet/v1/state", "/fleet/v1/machines"):
            r = await api.client.get(path, params={"nextPageToken": token})
            assert r.status_code == 410, path
            revision = PageToken.decode(token, 1).revision
            assert r.json() == {
                "error": {
                    "code": 410,
                    "message": f"listing expired: etcd no longer holds revision {revision};"
                    " list again from the first page",
                }
            }
        # Starting again works, at the current revision.
        assert [u["name"] for u in await walk(api, "/fleet/v1/units")] == [
            "a.service",
            "b.service",
            "c.service",
        ]


@async_test
async def test_a_revision_etcd_never_had_is_410(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        token = PageToken(100, 2, 2**62).encode()  # from another cluster, or before a restore
        r = await api.client.get("/fleet/v1/units", params={"nextPageToken": token})
        assert r.status_code == 410
        assert "list again from the first page" in r.json()["error"]["message"]


@async_test
async def test_fleets_own_tokens_still_page(etcd: EtcdProcess, etcd_prefix: str) -> None:
    # A token in fleet's 4-byte form (a listing begun on an older fleetd) reads
    # the current revision and carries on with a snapshot token.
    async with served_api(etcd, etcd_prefix, token_limit=1) as api:
        for name in ("a.service", "b.service", "c.service"):
            await put(api, name)
        got, token = await page(api, "/fleet/v1/units", PageToken(1, 2).encode())
        assert [u["name"] for u in got] == ["b.service"]
        assert token is not None
        assert PageToken.decode(token, 1).revision > 0


class _CountingCalls:
    """Wraps the registry connection's ``call``: how many etcd RPCs were made."""

    def __init__(self, connection: Any) -> None:
        self.calls: list[str] = []
        self._call = connection.call

    async def __call__(self, service: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(method)
        return await self._call(service, method, *args, **kwargs)


def test_etcd_reads_of_a_listing_do_not_grow_with_pages(
    etcd: EtcdProcess, etcd_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix, token_limit=5) as api:
            for i in range(60):
                await put(api, f"u{i:02}.service", seconds=i % 3)
            counter = _CountingCalls(api.registry.connection)
            monkeypatch.setattr(api.registry.connection, "call", counter)
            pages: list[int] = []
            token: str | None = None
            while True:
                before = len(counter.calls)
                _, token = await page(api, "/fleet/v1/units", token)
                pages.append(len(counter.calls) - before)
                if token is None:
                    break
            assert len(pages) == 12
            # The first page reads everything once; every later page only checks that
            # its revision is still readable.
            assert pages[1:] == [1] * 11
            assert pages[0] <= 8
            assert counter.calls.count("Txn") == 1  # the 3 distinct bodies, in one read

    run()


@pytest.fixture
def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    texts: list[str] = []
    parse = UnitFile.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[UnitFile], text: str) -> UnitFile:
        texts.append(text)
        result: UnitFile = parse(cls, text)
        return result

    monkeypatch.setattr(UnitFile, "parse", classmethod(counting))
    return texts


def test_each_body_is_parsed_once(
    etcd: EtcdProcess, etcd_prefix: str, count_parses: list[str]
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix, token_limit=4) as api:
            for i in range(20):
                await put(api, f"u{i:02}.service", seconds=i % 3)
            count_parses.clear()
            assert len(await walk(api, "/fleet/v1/units")) == 20
            await put(api, "v.service", seconds=2)  # a new revision: a new snapshot
            assert len(await walk(api, "/fleet/v1/units")) == 21
            r = await api.client.get("/fleet/v1/units/u01.service")
            assert r.status_code == 200
            assert len(count_parses) == 3  # one per distinct body, over every listing

    run()
