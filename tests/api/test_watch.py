"""``GET /fleet/v1/watch``: change notices driven by etcd watches (NDJSON and SSE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fleet.changes import ChangeFeed
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import Machine
from tests.api.support import served_api
from tests.asyncsupport import async_test, eventually

M1 = "1" * 32
UNIT = {
    "desiredState": "loaded",
    "options": [{"section": "Service", "name": "ExecStart", "value": "/bin/true"}],
}


async def _notices(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    async for line in lines:
        if line.strip():
            yield json.loads(line)


async def _next(notices: AsyncIterator[dict[str, Any]], event: str = "changed") -> dict[str, Any]:
    async with asyncio.timeout(5):
        async for notice in notices:
            if notice["event"] == event:
                return notice
    raise AssertionError("the stream ended")


@async_test
async def test_ndjson_stream_reports_unit_and_machine_changes(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        feed: ChangeFeed = api.app.state.change_feed
        async with api.client.stream("GET", "/fleet/v1/watch?topics=units,machines") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            notices = _notices(r.aiter_lines())
            ready = await _next(notices, "ready")
            assert ready["topics"] == ["units", "machines"]
            assert ready["revision"] > 0
            assert feed.statistics()["watches"] == 7

            put = await api.client.put("/fleet/v1/units/a.service", json=UNIT)
            assert put.status_code == 201
            changed = await _next(notices)
            assert changed["topic"] == "units"
            assert changed["revision"] > ready["revision"]

            await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=10)
            assert (await _next(notices))["topic"] == "machines"
        # The client went away: the feed stops its etcd watches.
        await eventually(lambda: asyncio.sleep(0, feed.statistics()["watches"] == 0))


@async_test
async def test_sse_stream_for_one_topic(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        headers = {"Accept": "text/event-stream"}
        async with api.client.stream(
            "GET", "/fleet/v1/watch?topics=machines", headers=headers
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.aiter_lines()
            async with asyncio.timeout(5):
                assert await anext(lines) == "event: ready"
                data = json.loads((await anext(lines)).removeprefix("data: "))
                assert data["topics"] == ["machines"]
                assert await anext(lines) == ""
                # A unit change is not a machines change: only the machine shows.
                put = await api.client.put("/fleet/v1/units/b.service", json=UNIT)
                assert put.status_code == 201
                await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=10)
                assert await anext(lines) == "event: changed"
                data = json.loads((await anext(lines)).removeprefix("data: "))
                assert data["topic"] == "machines"


@async_test
async def test_unknown_topic_is_a_400(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        r = await api.client.get("/fleet/v1/watch?topics=units,bogus")
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "unknown topic 'bogus': use one of units, machines"


@async_test
async def test_closing_the_feed_ends_open_streams(etcd: EtcdProcess, etcd_prefix: str) -> None:
    # What fleetd does when it stops serving: no answer is left for uvicorn to wait on.
    async with served_api(etcd, etcd_prefix) as api:
        feed: ChangeFeed = api.app.state.change_feed
        async with api.client.stream("GET", "/fleet/v1/watch") as r:
            notices = _notices(r.aiter_lines())
            await _next(notices, "ready")
            feed.close()
            async with asyncio.timeout(5):
                rest = [notice async for notice in notices]
        assert rest == []
        await eventually(lambda: asyncio.sleep(0, feed.statistics()["watches"] == 0))
