"""``/events``: the cluster's event history (an extension, feature B13).

``GET /fleet/v1/events`` answers ``{"events": [...], "revision": N}``, oldest
first, filtered by ``unit`` (repeatable), ``machine``, ``since`` (RFC 3339) and
``limit`` (the newest that many); ``follow=true`` instead streams the same
events and then every new one as newline-delimited JSON, driven by an etcd
watch, until the client goes away. Bad query values are a 400 in fleet's
error envelope. The filters are :class:`fleet.core.events.EventQuery`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from fleet import events
from fleet.api.schema import ErrorEnvelope
from fleet.core.events import Event, EventQuery
from fleet.core.names import validate_unit_name
from fleet.errors import InvalidInput, StoreError
from fleet.ports import EventStore

log = logging.getLogger(__name__)

_PARAMS = frozenset({"unit", "machine", "since", "limit", "follow"})
MAX_LIMIT = 100_000
NDJSON = "application/x-ndjson"


def query_of(request: Request) -> tuple[EventQuery, bool]:
    """The query and whether to follow; InvalidInput (a 400) for a bad value."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - _PARAMS)
    if unknown:
        raise InvalidInput(f"unknown query parameter {unknown[0]!r}")
    units = tuple(params.getlist("unit"))
    for name in units:
        validate_unit_name(name)
    machines = params.getlist("machine")
    if len(machines) > 1:
        raise InvalidInput("machine may be given once")
    machine = machines[0] if machines else None
    if machine is not None and (not machine or "/" in machine):
        raise InvalidInput(f"invalid machine id {machine!r}")
    since_text = params.get("since")
    since = events.parse_time(since_text) if since_text is not None else None
    limit_text = params.get("limit")
    limit = None
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise InvalidInput(f"invalid limit {limit_text!r}: want a number from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
    follow_text = params.get("follow", "false").lower()
    if follow_text not in ("true", "false", "1", "0"):
        raise InvalidInput(f"invalid follow {follow_text!r}: want true or false")
    return EventQuery(units, machine, since, limit), follow_text in ("true", "1")


def events_router(store: EventStore) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/events",
        response_model=None,
        responses={
            200: {
                "description": "events, oldest first (with follow=true: NDJSON, one per line)",
                "content": {NDJSON: {}},
            },
            400: {"model": ErrorEnvelope},
        },
    )
    async def get_events(request: Request) -> Response:
        query, follow = query_of(request)
        if not follow:
            found, revision = await events.list_events(store, query)
            return JSONResponse({"events": [events.wire(e) for e in found], "revision": revision})
        # The listing is read before answering, so an etcd outage is still a 503.
        found, revision = await events.list_events(store, query)

        async def lines() -> AsyncIterator[bytes]:
            for event in found:
                yield _line(event)
            stream = events.follow_from(store, query, found, revision)
            try:
                async for event in stream:
                    yield _line(event)
            except StoreError as exc:
                log.warning("events follow ended: %s", exc)
            finally:
                await stream.aclose()

        return StreamingResponse(lines(), media_type=NDJSON)

    return router


def _line(event: Event) -> bytes:
    return json.dumps(events.wire(event), separators=(",", ":")).encode() + b"\n"
