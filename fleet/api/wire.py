"""The HTTP edge the routes share: how a request body is read and an answer written.

A body must come as exactly one ``application/json`` Content-Type (else 415),
be at most :data:`MAX_BODY_BYTES` (else 413, refused on its Content-Length
before any of it is read, or as soon as a body without one grows past the
limit), decode as JSON (else 400, also for JSON nested too deeply to decode)
and validate against its :mod:`fleet.api.schema` model (else a 400 naming the
fields); answers are the models' wire form. Route paths use the
``anytext`` convertor registered here, so a hostile name such as
``x%0A.service`` reaches name validation (a 400) instead of falling through to
a 404; :func:`request_body` documents a route's body in the OpenAPI schema.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.convertors import Convertor, register_url_convertor

from fleet.api import schema
from fleet.api.errors import ApiProblem, describe_validation
from fleet.errors import InvalidInput, TooLarge

_T = TypeVar("_T")

JSON = "application/json"
# Room for any ordinary JSON encoding of a unit at fleet.core.limits'
# MAX_UNIT_BYTES (128 KiB), so that it gets the unit's own answer: escaping can
# make the JSON six times the unit, and each option's {"section","name","value"}
# wrapper adds some 40 bytes. No larger body is ever held in memory: reading
# stops at the limit.
MAX_BODY_BYTES = 2 * 1024 * 1024
_DIGITS = re.compile(r"[0-9]+")


class _AnyText(Convertor[str]):
    """Like Starlette's ``path`` convertor but also matching newlines."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


def json_response(payload: schema._Wire | dict[str, Any], status: int = 200) -> JSONResponse:
    body = payload.wire() if isinstance(payload, schema._Wire) else payload
    return JSONResponse(body, status_code=status)


def check_content_type(request: Request) -> None:
    values = request.headers.getlist("content-type")
    if len(values) != 1:
        raise ApiProblem(415, "expected exactly one Content-Type header")
    media_type, _, params = values[0].partition(";")
    if media_type.strip().lower() != JSON:
        raise ApiProblem(415, f"expected Content-Type {JSON}, got {media_type.strip()!r}")
    for param in filter(None, (p.strip() for p in params.split(";"))):
        if "=" not in param:
            raise ApiProblem(415, "unable to parse Content-Type header")


def _too_large(size: str | None) -> TooLarge:
    limit = f"{MAX_BODY_BYTES} bytes ({MAX_BODY_BYTES // (1024 * 1024)} MiB)"
    if size is None:
        return TooLarge(f"request body too large: over the limit of {limit}")
    return TooLarge(f"request body too large: {size} bytes, the limit is {limit}")


async def _read_body(request: Request) -> bytes:
    """The request body, refused with a 413 once it is over :data:`MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length", "")
    if _DIGITS.fullmatch(declared) and (len(declared) > 18 or int(declared) > MAX_BODY_BYTES):
        # Judged before the first receive: a client waiting on "Expect: 100-continue"
        # is answered without sending the body at all.
        raise _too_large(declared)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large(None)
    return bytes(body)


async def read_json(request: Request) -> Any:
    raw = await _read_body(request)
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise InvalidInput("unable to decode body: JSON nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"unable to decode body: {exc}") from exc


def parse(adapter: TypeAdapter[_T], value: Any) -> _T:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(describe_validation(list(exc.errors()))) from exc


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve pydantic's local ``#/$defs`` refs so a schema can sit anywhere in OpenAPI."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def request_body(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """``openapi_extra`` documenting a route's required JSON body."""
    raw = adapter.json_schema(by_alias=True)
    body = _inline_refs(raw, raw.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {JSON: {"schema": body}}}}
