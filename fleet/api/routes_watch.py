"""``/watch``: the change feed on the wire (an extension), for ``--watch`` and the dashboard.

The answer streams one notice per line as long as the client stays:
newline-delimited JSON by default, server-sent events when the client asks
for ``text/event-stream`` (a browser's ``EventSource``). The first notice,
``ready``, carries the revision the feed watches from: a listing read after it
misses no change. Then ``changed`` (a topic and the revision of its newest
change; several changes may come as one) and, when nothing happened for a
while, ``heartbeat``, so a client can tell a quiet cluster from a dead
connection. The notices carry no listing: the client reads it again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from fleet.changes import ChangeFeed, parse_topics

HEARTBEAT = 15.0  # seconds of quiet before a heartbeat notice
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


def notice_lines(notice: dict[str, object], sse: bool) -> bytes:
    data = json.dumps(notice, separators=(",", ":"))
    if sse:
        return f"event: {notice['event']}\ndata: {data}\n\n".encode()
    return (data + "\n").encode()


async def notices(
    feed: ChangeFeed, topics: tuple[str, ...], sse: bool, heartbeat: float = HEARTBEAT
) -> AsyncIterator[bytes]:
    """The stream of one subscription, ended by the client going away."""
    async with feed.subscribe(topics) as subscription:
        ready = {"event": "ready", "topics": list(topics), "revision": subscription.revision}
        yield notice_lines(ready, sse)
        while True:
            changes = await subscription.next_changes(heartbeat)
            if subscription.closed:
                return  # the server is stopping: end the answer, the client reconnects
            if not changes:
                yield notice_lines({"event": "heartbeat"}, sse)
            for topic, revision in changes.items():
                yield notice_lines({"event": "changed", "topic": topic, "revision": revision}, sse)


def stream_response(feed: ChangeFeed, topics: tuple[str, ...], sse: bool) -> StreamingResponse:
    return StreamingResponse(
        notices(feed, topics, sse),
        media_type=SSE if sse else NDJSON,
        # No proxy or browser may hold notices back or keep them.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def watch_router(feed: ChangeFeed) -> APIRouter:
    router = APIRouter()

    # Not in the OpenAPI document: it never ends, which schema fuzzers cannot take.
    @router.get("/watch", include_in_schema=False)
    async def get_watch(request: Request, topics: str | None = None) -> StreamingResponse:
        wanted = parse_topics(topics)
        sse = SSE in request.headers.get("accept", "")
        # Read etcd once before answering: an outage is a 503, not a broken stream.
        await feed.revision()
        return stream_response(feed, wanted, sse)

    return router
