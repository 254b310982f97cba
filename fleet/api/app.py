"""fleet API v1 as a FastAPI application: routes, error envelope, readiness gate.

:func:`create_app` builds the app on any registry that is both a
:class:`~fleet.ports.UnitStore` and a :class:`~fleet.ports.ClusterView`. The
routes are mounted at ``/fleet/v1`` and at fleet's older ``/v1-alpha``; every
answer carries ``Server: fleetd/<version>`` and every error, FastAPI's own
404/405/422 included, is fleet's ``{"error":{"code":N,"message":"..."}}``.
Until ``ready()`` is true (the daemon has registered its machine) the v1
routes answer 503, as fleet did. Bad input is always a 4xx and nothing is
written; an etcd outage is a 503; only a bug is a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.api import schema
from fleet.api.discovery import discovery_document
from fleet.core.model import DesiredState, Job
from fleet.core.names import UnitName, validate_unit_name
from fleet.core.requirements import validate_unit
from fleet.core.unitfile import UnitFile, UnitOption
from fleet.core.views import UnitInfo, build_unit_infos
from fleet.errors import (
    AlreadyExists,
    FleetError,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from fleet.metrics import CONTENT_TYPE_LATEST, FleetMetrics
from fleet.ports import ClusterView, UnitStore

log = logging.getLogger(__name__)
_T = TypeVar("_T")

PREFIXES = ("/fleet/v1", "/v1-alpha")
ETCD_UNAVAILABLE = "fleet server unable to communicate with etcd"
_JSON = "application/json"
_METHOD_ORDER = ("GET", "PUT", "PATCH", "POST", "DELETE")


class _AnyText(Convertor[str]):
    """Like Starlette's ``path`` convertor but also matching newlines, so a
    hostile name such as ``x%0A.service`` reaches name validation (a 400)
    instead of falling through to a 404."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


class ApiRegistry(UnitStore, ClusterView, Protocol):
    """What the API needs from the registry (EtcdRegistry implements both ports)."""


# ---------------------------------------------------------------------------
# Errors


class ApiProblem(Exception):
    """An HTTP error answer that is not one of fleet.errors' kinds (415, 405...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(schema.error_envelope(status, message), status_code=status, headers=headers)


def _status_of(exc: FleetError) -> int:
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AlreadyExists):
        return 409
    if isinstance(exc, StoreUnavailable):
        return 503
    return 500


def _describe_validation(errors: list[Any]) -> str:
    """One readable line from pydantic's error list."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "invalid request: " + "; ".join(parts)


def _allowed_methods(request: Request) -> list[str]:
    # Ask the router which methods would fully match this path: routes may be
    # nested (included routers), so their own method sets are not enough.
    routes = request.app.router.routes
    return [
        method
        for method in _METHOD_ORDER
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def _join_methods(methods: list[str]) -> str:
    if len(methods) <= 1:
        return "".join(methods)
    return ", ".join(methods[:-1]) + " and " + methods[-1]


def _install_error_handlers(app: FastAPI) -> None:
    async def on_fleet_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FleetError)
        status = _status_of(exc)
        if status == 503:
            return _error(503, ETCD_UNAVAILABLE)
        if status == 500:
            log.error("API %s %s failed: %s", request.method, request.url.path, exc)
            return _error(500, "")
        return _error(status, str(exc))

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return _error(exc.status, exc.message)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            methods = _allowed_methods(request)
            return _error(
                405,
                f"only {_join_methods(methods)} supported against this resource",
                {"Allow": ", ".join(methods)},
            )
        if exc.status_code == 404:
            return _error(404, "resource not found")
        return _error(exc.status_code, str(exc.detail))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _error(400, _describe_validation(list(exc.errors())))

    app.add_exception_handler(FleetError, on_fleet_error)
    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


# ---------------------------------------------------------------------------
# Middleware: readiness gate, Server header, Content-Type, metrics, last-resort 500


class _Envelope:
    """Pure ASGI middleware (outermost but for Starlette's own error layer)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        version: str,
        ready: Callable[[], bool],
        metrics: FleetMetrics,
    ) -> None:
        self.app = app
        self.server = f"fleetd/{version}".encode("latin-1")
        self.ready = ready
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                headers.append((b"server", self.server))
                if not any(k.lower() == b"content-type" for k, _ in headers):
                    headers.append((b"content-type", _JSON.encode()))
                message = {**message, "headers": headers}
            await send(message)

        path: str = scope.get("path", "")
        try:
            if not self.ready() and path.startswith(PREFIXES):
                await _error(503, ETCD_UNAVAILABLE)(scope, receive, send_wrapped)
            else:
                await self.app(scope, receive, send_wrapped)
        except Exception:
            # Never let a bug escape as a dropped connection or a text/plain page.
            log.exception("API %s %s crashed", scope.get("method"), path)
            if not started:
                await _error(500, "")(scope, receive, send_wrapped)
        finally:
            template = _route_template(scope, path)
            self.metrics.api_request(
                scope.get("method", ""), template, status, time.perf_counter() - start
            )


def _route_template(scope: Scope, path: str) -> str:
    """The matched route's template (bounded label cardinality), with its mount prefix."""
    route_path = str(getattr(scope.get("route"), "path", "") or "")
    if not route_path:
        return "unmatched"
    for prefix in PREFIXES:
        # Routes of an included router carry their path without the mount prefix.
        if path.startswith(prefix + "/") and not route_path.startswith(prefix):
            return prefix + route_path
    return route_path


# ---------------------------------------------------------------------------
# Conversions


def unit_to_wire(info: UnitInfo) -> schema.Unit:
    return schema.Unit(
        name=info.name,
        options=[
            schema.UnitOption(section=o.section, name=o.name, value=o.value)
            for o in info.unit.options
        ],
        desiredState=info.desired.value,
        currentState=info.current.value if info.current is not None else "",
        machineID=info.machine_id or "",
        reason=info.reason or "",
    )


def _json(payload: schema._Wire | dict[str, Any], status: int = 200) -> JSONResponse:
    body = payload.wire() if isinstance(payload, schema._Wire) else payload
    return JSONResponse(body, status_code=status)


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


def _request_body(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    raw = adapter.json_schema(by_alias=True)
    body = _inline_refs(raw, raw.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": body}}}}


def _check_content_type(request: Request) -> None:
    values = request.headers.getlist("content-type")
    if len(values) != 1:
        raise ApiProblem(415, "expected exactly one Content-Type header")
    media_type, _, params = values[0].partition(";")
    if media_type.strip().lower() != _JSON:
        raise ApiProblem(415, f"expected Content-Type {_JSON}, got {media_type.strip()!r}")
    for param in filter(None, (p.strip() for p in params.split(";"))):
        if "=" not in param:
            raise ApiProblem(415, "unable to parse Content-Type header")


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"unable to decode body: {exc}") from exc


def _parse(adapter: TypeAdapter[_T], value: Any) -> _T:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(_describe_validation(list(exc.errors()))) from exc


def _check_name(name: str) -> None:
    validate_unit_name(name)


def _desired(text: str) -> DesiredState | None:
    if not text:
        return None
    if text not in schema.DESIRED_STATES:
        raise InvalidInput(f'invalid desiredState "{text}": expect inactive, loaded or launched')
    return DesiredState(text)


def _refuse_template_activation(name: str, desired: DesiredState) -> None:
    if desired is not DesiredState.INACTIVE and UnitName.parse(name).is_template:
        raise InvalidInput(f'cannot activate template "{name}"')


_UNIT_PUT = TypeAdapter(schema.UnitPut)
_PATCH = TypeAdapter(list[schema.MachinePatchOp])


# ---------------------------------------------------------------------------
# Routes


def _v1_router(registry: ApiRegistry, token_limit: int) -> APIRouter:
    router = APIRouter()

    async def unit_infos(jobs: list[Job]) -> list[UnitInfo]:
        schedule, states, reasons, texts = await asyncio.gather(
            registry.list_schedule(),
            registry.list_unit_states(),
            registry.list_reasons(),
            registry.get_unit_bodies(sorted({j.hash for j in jobs})),
        )
        bodies: dict[str, UnitFile] = {}
        for digest, text in texts.items():
            try:
                bodies[digest] = UnitFile.parse(text)
            except InvalidInput:
                log.warning("unit body %s in the registry does not parse; hiding it", digest)
        return build_unit_infos(jobs, bodies, schedule, states, reasons)

    async def list_units(token: schema.PageToken) -> JSONResponse:
        infos = await unit_infos(await registry.list_jobs())
        page, next_token = schema.paginate(infos, token)
        return _json(
            schema.UnitPage(units=[unit_to_wire(i) for i in page], nextPageToken=next_token)
        )

    @router.get(
        "/discovery",
        summary="Google discovery document of this API",
        responses={200: {"content": {_JSON: {"schema": {"type": "object"}}}}},
    )
    async def get_discovery() -> JSONResponse:
        return _json(discovery_document())

    @router.api_route(
        "/discovery", methods=["PUT", "POST", "DELETE", "PATCH"], include_in_schema=False
    )
    async def other_discovery() -> JSONResponse:
        raise InvalidInput("only GET supported against this resource")

    @router.get(
        "/units",
        responses={200: {"model": schema.UnitPage}, 400: {"model": schema.ErrorEnvelope}},
    )
    async def get_units(nextPageToken: str | None = None) -> JSONResponse:
        return await list_units(schema.PageToken.from_query(nextPageToken, token_limit))

    @router.get(
        "/units/{name:anytext}",
        responses={
            200: {"model": schema.Unit},
            400: {"model": schema.ErrorEnvelope},
            404: {"model": schema.ErrorEnvelope},
        },
    )
    async def get_unit(name: str, nextPageToken: str | None = None) -> JSONResponse:
        if not name:  # "/units/" is the collection, as in fleet
            return await list_units(schema.PageToken.from_query(nextPageToken, token_limit))
        _check_name(name)
        job = await registry.get_job(name)
        infos = await unit_infos([job]) if job is not None else []
        if not infos:
            raise NotFound("unit does not exist")
        return _json(unit_to_wire(infos[0]))

    @router.put(
        "/units/{name:anytext}",
        status_code=201,
        responses={
            201: {"description": "unit created or its content replaced"},
            204: {"description": "desired state set"},
            400: {"model": schema.ErrorEnvelope},
            409: {"model": schema.ErrorEnvelope},
            415: {"model": schema.ErrorEnvelope},
        },
        openapi_extra=_request_body(_UNIT_PUT),
    )
    async def put_unit(name: str, request: Request) -> Response:
        _check_content_type(request)
        body = _parse(_UNIT_PUT, await _read_json(request))
        wanted = body.name or name
        if wanted != name:
            raise InvalidInput(
                f'name in URL "{name}" differs from unit name in request body "{wanted}"'
            )
        _check_name(name)
        desired = _desired(body.desired_state)
        existing = await registry.get_job(name)
        unit_file: UnitFile | None = None
        if body.options:
            unit_file = UnitFile.from_options(
                UnitOption(o.section, o.name, o.value) for o in body.options
            )
        if existing is None and unit_file is None:
            raise AlreadyExists("unit does not exist and options field empty")
        if unit_file is not None and (existing is None or existing.hash != unit_file.hash):
            validate_unit(name, unit_file)
            target = desired or DesiredState.INACTIVE
            _refuse_template_activation(name, target)
            body_text = unit_file.serialize()
            if existing is None:
                await registry.create_unit(name, body_text, unit_file.hash, target)
            else:
                await registry.replace_unit(name, body_text, unit_file.hash, target)
            return Response(status_code=201)
        if desired is None:
            raise AlreadyExists("must provide DesiredState to update existing unit")
        _refuse_template_activation(name, desired)
        await registry.set_desired_state(name, desired)
        return Response(status_code=204)

    @router.delete(
        "/units/{name:anytext}",
        status_code=204,
        responses={204: {"description": "destroyed"}, 404: {"model": schema.ErrorEnvelope}},
    )
    async def delete_unit(name: str) -> Response:
        if not name:
            raise ApiProblem(405, "only GET supported against this resource")
        _check_name(name)
        if not await registry.destroy_unit(name):
            raise NotFound("unit does not exist")
        return Response(status_code=204)

    @router.get(
        "/state",
        responses={200: {"model": schema.UnitStatePage}, 400: {"model": schema.ErrorEnvelope}},
    )
    async def get_states(
        machineID: str | None = None,
        unitName: str | None = None,
        nextPageToken: str | None = None,
    ) -> JSONResponse:
        token = schema.PageToken.from_query(nextPageToken, token_limit)
        states = [
            s
            for s in await registry.list_unit_states()
            if (not machineID or s.machine_id == machineID) and (not unitName or s.name == unitName)
        ]
        page, next_token = schema.paginate(states, token)
        return _json(
            schema.UnitStatePage(states=[_state_to_wire(s) for s in page], nextPageToken=next_token)
        )

    @router.get(
        "/state/{name:anytext}",
        responses={200: {"model": schema.UnitState}, 404: {"model": schema.ErrorEnvelope}},
    )
    async def get_state(name: str) -> JSONResponse:
        _check_name(name)
        for state in await registry.list_unit_states():
            if state.name == name:
                return _json(_state_to_wire(state))
        raise NotFound("unit state does not exist")

    @router.get(
        "/machines",
        responses={200: {"model": schema.MachinePage}, 400: {"model": schema.ErrorEnvelope}},
    )
    async def get_machines(nextPageToken: str | None = None) -> JSONResponse:
        token = schema.PageToken.from_query(nextPageToken, token_limit)
        machines = await registry.list_machines()
        page, next_token = schema.paginate(machines, token)
        return _json(
            schema.MachinePage(
                machines=[
                    schema.Machine(id=m.id, primaryIP=m.public_ip, metadata=dict(m.metadata))
                    for m in page
                ],
                nextPageToken=next_token,
            )
        )

    @router.patch(
        "/machines",
        status_code=204,
        responses={204: {"description": "applied"}, 400: {"model": schema.ErrorEnvelope}},
        openapi_extra=_request_body(_PATCH),
    )
    async def patch_machines(request: Request) -> Response:
        ops = _parse(_PATCH, await _read_json(request))
        for change in schema.validate_patch(ops):
            await registry.set_machine_metadata(change.machine_id, change.key, change.value)
        return Response(status_code=204)

    return router


def _state_to_wire(state: Any) -> schema.UnitState:
    return schema.UnitState(
        name=state.name,
        hash=state.hash,
        machineID=state.machine_id,
        systemdLoadState=state.load_state,
        systemdActiveState=state.active_state,
        systemdSubState=state.sub_state,
    )


# ---------------------------------------------------------------------------


def create_app(
    registry: ApiRegistry,
    *,
    machine_id: str,
    version: str,
    ready: Callable[[], bool] = lambda: True,
    token_limit: int = 100,
    metrics: FleetMetrics | CollectorRegistry | None = None,
) -> FastAPI:
    """The fleet API v1 app.

    ``metrics`` is the daemon's :class:`FleetMetrics` (shared with the engine and
    registry), or a bare ``CollectorRegistry`` to register them on; by default a
    fresh private registry.
    """
    if not 0 < token_limit <= 0xFFFF:
        raise InvalidInput(f"token_limit must be between 1 and 65535, not {token_limit}")
    if not isinstance(metrics, FleetMetrics):
        metrics = FleetMetrics(metrics)
    app = FastAPI(
        title="fleet",
        version=version,
        description="fleet API v1 (compatible with CoreOS fleet) and its extensions.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.machine_id = machine_id
    app.state.metrics = metrics
    _install_error_handlers(app)
    router = _v1_router(registry, token_limit)
    app.include_router(router, prefix=PREFIXES[0])
    app.include_router(router, prefix=PREFIXES[1], include_in_schema=False)

    @app.api_route("/", methods=["GET", "PUT", "POST", "DELETE", "PATCH"], include_in_schema=False)
    async def root() -> Response:
        raise ApiProblem(405, "only requests against /fleet/v1 are supported")

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Envelope, version=version, ready=ready, metrics=metrics)
    return app
