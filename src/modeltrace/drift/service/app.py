"""The Starlette application of ``modeltrace serve``: OTLP/HTTP, JSON API, /metrics, probes.

Routes (SPEC "Aggregator service"): ``POST /v1/traces`` (protobuf or JSON, gzip
or identity), ``PUT .../reference``, ``GET /api/v1/models``, ``GET .../drift``,
``GET /metrics``, ``GET /healthz``, ``GET /readyz``. Every error is answered
with a precise message and the service stays up; request bodies are read
under a size limit, feature values are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modeltrace.drift.otlp_fast import extract_request
from modeltrace.drift.service.auth import BearerAuth, BearerAuthMiddleware
from modeltrace.drift.service.body_reader import (
    BodyEncodingError,
    BodyTooLargeError,
    UnsupportedContentEncodingError,
    check_content_encoding,
    read_body,
)
from modeltrace.drift.service.ingest_queue import (
    QueueClosedError,
    QueueFullError,
    StoreBusyError,
)
from modeltrace.drift.service.otlp_codec import (
    Encoding,
    OtlpDecodeError,
    ParsedExport,
    UnsupportedMediaTypeError,
    count_spans,
    decode_json_request,
    encode_response,
    encode_status,
    negotiate_encoding,
    parse_protobuf_export,
)
from modeltrace.drift.service.receiver import TraceReceiver
from modeltrace.drift.service.telemetry import PROMETHEUS_CONTENT_TYPE, MetricsPipeline

logger = logging.getLogger("modeltrace.service.http")

RETRY_AFTER_SECONDS = "1"
TRANSPORT = "http"

# google.rpc.Code values used in OTLP/HTTP error bodies.
_CODE_INVALID_ARGUMENT = 3
_CODE_RESOURCE_EXHAUSTED = 8
_CODE_INTERNAL = 13
_CODE_UNAVAILABLE = 14


class DriftBackend(Protocol):
    """What the API needs of ``DriftAggregator``."""

    def set_reference(self, model: str, version: str, reference: Any) -> None: ...

    def models(self) -> Any: ...

    def evaluate(self, model: str, version: str) -> Any: ...


@dataclass
class ServiceState:
    """Everything the routes use, wired by the runner."""

    backend: DriftBackend
    receiver: TraceReceiver
    metrics_pipeline: MetricsPipeline
    parse_reference: Callable[[Any], Any]
    reference_errors: tuple[type[Exception], ...]
    unknown_model_errors: tuple[type[Exception], ...]
    max_body_size: int
    ready: bool = False


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=headers)


def _api_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return _json(status, {"error": message, "status": status}, headers)


def _otlp_error(
    encoding: Encoding, status: int, grpc_code: int, message: str, retry: bool = False
) -> Response:
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if retry else None
    return Response(
        encode_status(encoding, grpc_code, message),
        status_code=status,
        media_type=encoding.value,
        headers=headers,
    )


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def _read_limited(request: Request, limit: int) -> bytes:
    """Body with Content-Encoding applied and the size limit enforced (raises body errors)."""
    encoding = check_content_encoding(request.headers.get("content-encoding"))
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise BodyTooLargeError(f"request body of {declared} bytes exceeds the limit of {limit}")
    return await read_body(request.stream(), encoding, limit)


def _parse_json_export(body: bytes) -> tuple[bytes, ParsedExport]:
    """An OTLP/JSON body as the protobuf bytes the store keeps, validated and counted."""
    message = decode_json_request(body)
    serialized = message.SerializeToString()
    return serialized, ParsedExport(count_spans(message), extract_request(serialized))


async def export_traces(request: Request) -> Response:
    """OTLP/HTTP ``POST /v1/traces``; answers only once the spans are committed."""
    state: ServiceState = request.app.state.service
    metrics = state.receiver.metrics
    try:
        encoding = negotiate_encoding(request.headers.get("content-type"))
    except UnsupportedMediaTypeError as exc:
        metrics.record_request(TRANSPORT, "unsupported_media_type")
        return _api_error(415, str(exc))
    try:
        body = await _read_limited(request, state.max_body_size)
    except UnsupportedContentEncodingError as exc:
        metrics.record_request(TRANSPORT, "unsupported_media_type")
        return _otlp_error(encoding, 415, _CODE_INVALID_ARGUMENT, str(exc))
    except BodyTooLargeError as exc:
        metrics.record_request(TRANSPORT, "too_large")
        return _otlp_error(encoding, 413, _CODE_INVALID_ARGUMENT, str(exc))
    except BodyEncodingError as exc:
        metrics.record_request(TRANSPORT, "bad_request")
        return _otlp_error(encoding, 400, _CODE_INVALID_ARGUMENT, str(exc))
    try:
        if encoding is Encoding.PROTOBUF:
            payload = body
            parsed = parse_protobuf_export(body)
        elif len(body) > 256 * 1024:
            payload, parsed = await run_in_threadpool(_parse_json_export, body)
        else:
            payload, parsed = _parse_json_export(body)
    except OtlpDecodeError as exc:
        metrics.record_request(TRANSPORT, "bad_request")
        return _otlp_error(encoding, 400, _CODE_INVALID_ARGUMENT, str(exc))
    if parsed.spans == 0:
        metrics.record_request(TRANSPORT, "empty")
        return Response(encode_response(encoding), media_type=encoding.value)
    try:
        future = state.receiver.submit(payload, parsed.extraction)
    except QueueFullError as exc:
        metrics.record_request(TRANSPORT, "queue_full")
        return _otlp_error(encoding, 429, _CODE_RESOURCE_EXHAUSTED, str(exc), retry=True)
    except QueueClosedError as exc:
        metrics.record_request(TRANSPORT, "unavailable")
        return _otlp_error(encoding, 503, _CODE_UNAVAILABLE, str(exc), retry=True)
    try:
        result = await asyncio.wrap_future(future)
    except StoreBusyError as exc:
        metrics.record_request(TRANSPORT, "store_busy")
        return _otlp_error(encoding, 503, _CODE_UNAVAILABLE, str(exc), retry=True)
    except Exception as exc:
        metrics.record_request(TRANSPORT, "error")
        logger.error("export failed: %s", type(exc).__name__)
        return _otlp_error(encoding, 500, _CODE_INTERNAL, f"ingestion failed: {type(exc).__name__}")
    outcome = state.receiver.outcome(result, TRANSPORT)
    return Response(
        encode_response(encoding, outcome.rejected_spans, outcome.error_message),
        media_type=encoding.value,
    )


async def put_reference(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    model, version = request.path_params["model"], request.path_params["version"]
    try:
        body = await _read_limited(request, state.max_body_size)
    except UnsupportedContentEncodingError as exc:
        return _api_error(415, str(exc))
    except BodyTooLargeError as exc:
        return _api_error(413, str(exc))
    except BodyEncodingError as exc:
        return _api_error(400, str(exc))
    media = (request.headers.get("content-type") or "application/json").split(";")[0].strip()
    if media.lower() not in ("application/json", "text/json"):
        return _api_error(415, f"unsupported Content-Type {media!r}: a reference is JSON")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _api_error(400, f"reference is not valid JSON: {exc}")
    try:
        reference = state.parse_reference(document)
    except state.reference_errors as exc:
        return _api_error(400, f"invalid reference: {exc}")
    try:
        await run_in_threadpool(state.backend.set_reference, model, version, reference)
    except state.reference_errors as exc:
        return _api_error(400, f"invalid reference: {exc}")
    logger.info("reference stored", extra={"model": model, "version": version})
    return _json(200, {"model": model, "version": version, "status": "stored"})


async def list_models(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    models = await run_in_threadpool(state.backend.models)
    return _json(200, _jsonable(models))


async def get_drift(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    model, version = request.path_params["model"], request.path_params["version"]
    try:
        report = await run_in_threadpool(state.backend.evaluate, model, version)
    except state.unknown_model_errors as exc:
        return _api_error(404, _unknown_model_message(exc, model, version))
    return _json(200, report.to_dict())


def _unknown_model_message(exc: Exception, model: str, version: str) -> str:
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or f"unknown model {model!r} version {version!r}"


def _jsonable(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


async def prometheus_metrics(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    text = await run_in_threadpool(state.metrics_pipeline.render_prometheus)
    return Response(text, media_type=PROMETHEUS_CONTENT_TYPE)


async def healthz(request: Request) -> Response:
    return _json(200, {"status": "ok"})


async def readyz(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    if state.ready and state.receiver.queue.running:
        return _json(200, {"status": "ready"})
    return _json(503, {"status": "not ready"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _api_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _unhandled_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s: %s", request.url.path, type(exc).__name__)
    return _api_error(500, f"internal error: {type(exc).__name__}")


_MODEL_PATH = "/api/v1/models/{model}/versions/{version}"


def build_app(
    state: ServiceState,
    *,
    auth: BearerAuth | None = None,
    lifespan: Any = None,
    extra_routes: Sequence[Route] = (),
) -> Starlette:
    """The ASGI app; with ``auth`` every route but the probes needs the bearer token."""
    routes = [
        Route("/v1/traces", export_traces, methods=["POST"]),
        Route(f"{_MODEL_PATH}/reference", put_reference, methods=["PUT"]),
        Route("/api/v1/models", list_models, methods=["GET"]),
        Route(f"{_MODEL_PATH}/drift", get_drift, methods=["GET"]),
        Route("/metrics", prometheus_metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *extra_routes,
    ]
    middleware = [Middleware(BearerAuthMiddleware, auth=auth)] if auth is not None else []
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _unhandled_error},
        lifespan=lifespan,
    )
    app.state.service = state
    return app
