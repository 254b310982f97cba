"""``GET /fleet/v1/events`` (B13): the list contract, filters, 400s in fleet's
envelope, and ``follow=true`` streaming NDJSON driven by an etcd watch."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.events import EventFactory, EventKind
from fleet.events import rfc3339
from tests.api.support import served_api
from tests.asyncsupport import async_test

pytestmark = pytest.mark.etcd

M1, M2 = "m1" * 16, "m2" * 16
FIELDS = {"id", "time", "kind", "unit", "machine", "message", "reason", "result"}


@async_test
async def test_events_list_sorted_oldest_first_with_filters(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        f = EventFactory("api")
        now = time.time()
        history = [
            f.make(now - 30, EventKind.PLACED, unit="a.service", machine=M1, reason="why"),
            f.make(now - 20, EventKind.MACHINE_LEFT, machine=M1, message="machine lost"),
            f.make(now - 10, EventKind.STARTED, unit="b.service", machine=M2, result="done"),
        ]
        await api.registry.record_events(list(reversed(history)))
        r = await api.client.get("/fleet/v1/events")
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"events", "revision"}
        assert isinstance(body["revision"], int)
        assert [e["id"] for e in body["events"]] == [e.id for e in history]
        first = body["events"][0]
        assert set(first) == FIELDS
        assert first == {
            "id": history[0].id,
            "time": rfc3339(history[0].time),
            "kind": "placed",
            "unit": "a.service",
            "machine": M1,
            "message": "placed on m1m1m1m1",
            "reason": "why",
            "result": None,
        }
        assert first["time"].endswith("Z")

        async def ids(**params: str | int | list[str]) -> list[str]:
            r = await api.client.get("/fleet/v1/events", params=params)
            assert r.status_code == 200, r.text
            return [e["id"] for e in r.json()["events"]]

        # A unit's history shows its machine leaving.
        assert await ids(unit="a.service") == [history[0].id, history[1].id]
        assert await ids(unit=["a.service", "b.service"]) == [e.id for e in history]
        assert await ids(machine=M2) == [history[2].id]
        assert await ids(since=rfc3339(now - 25)) == [history[1].id, history[2].id]
        assert await ids(limit=1) == [history[2].id]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "invalid time 'yesterday'"),
        ("since=2026-01-02T03:04:05", "with a time zone"),
        ("limit=0", "invalid limit '0'"),
        ("limit=x", "invalid limit 'x'"),
        ("unit=a%2Fb.service", "invalid unit name"),
        ("machine=a&machine=b", "machine may be given once"),
        ("follow=maybe", "invalid follow 'maybe'"),
        ("colour=red", "unknown query parameter 'colour'"),
    ],
)
@async_test
async def test_bad_query_is_a_400_in_fleets_envelope(
    etcd: EtcdProcess, etcd_prefix: str, query: str, message: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.get(f"/fleet/v1/events?{query}")
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == 400
        assert message in error["message"]


@async_test
async def test_follow_streams_ndjson_from_an_etcd_watch(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        f = EventFactory("api")
        old = f.make(time.time(), EventKind.PLACED, unit="c.service", machine=M1)
        other = f.make(time.time(), EventKind.PLACED, unit="other.service", machine=M2)
        await api.registry.record_events([old])
        async with api.client.stream(
            "GET", "/fleet/v1/events", params={"unit": "c.service", "follow": "true"}
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            lines = r.aiter_lines()
            async with asyncio.timeout(10):
                assert json.loads(await anext(lines))["id"] == old.id
            new = f.make(time.time(), EventKind.STARTED, unit="c.service", machine=M1)
            left = f.make(time.time(), EventKind.MACHINE_LEFT, machine=M1)
            await api.registry.record_events([other, new, left])
            async with asyncio.timeout(10):
                got = [json.loads(await anext(lines)) for _ in range(2)]
            assert [e["id"] for e in got] == [new.id, left.id]
            assert set(got[0]) == FIELDS
