"""Routes of ``modeltrace serve`` for delayed labels, performance, SLOs and the HTML pages.

* ``POST /api/v1/models/{model}/versions/{version}/labels``: bulk labels as JSON
  (``application/json``) or CSV (``text/csv``), see
  ``modeltrace.drift.label_upload``. Answered only once the labels are committed
  to the store (they survive ``kill -9``): ``{"accepted", "matched", "pending",
  "duplicates", "not_captured", "late"}``. 400 names the bad entry or line, 413
  when the body or the label count is over the limit, 415 for other types.
* ``GET .../performance``: realized and estimated performance of the current
  window, label coverage, join counts and SLOs (``DriftAggregator.performance``).
* ``GET``/``PUT .../slo``: ``{"thresholds": {"accuracy": 0.9, ...}, "task": ...}``.
* ``GET /`` and ``GET /models/{model}/versions/{version}``: the HTML report
  (``modeltrace.drift.report_pages``); trace links follow ``MODELTRACE_TRACE_URL``.

Like every route but the probes, these need the bearer token when one is set.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from modeltrace.drift.label_upload import (
    LabelUploadError,
    TooManyLabelsError,
    parse_csv_labels,
    parse_json_labels,
)
from modeltrace.drift.service.app import ServiceState, _read_limited, _unknown_model_message
from modeltrace.drift.service.body_reader import (
    BodyEncodingError,
    BodyTooLargeError,
    UnsupportedContentEncodingError,
)

__all__ = ["performance_routes"]

logger = logging.getLogger("modeltrace.service.http")

_MODEL_PATH = "/api/v1/models/{model}/versions/{version}"
_JSON_TYPES = ("application/json", "text/json")
_CSV_TYPES = ("text/csv", "application/csv")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _backend(request: Request) -> Any:
    state: ServiceState = request.app.state.service
    return state.backend


def _unknown_errors(request: Request) -> tuple[type[Exception], ...]:
    state: ServiceState = request.app.state.service
    return state.unknown_model_errors


async def _body(request: Request) -> bytes | Response:
    state: ServiceState = request.app.state.service
    try:
        return await _read_limited(request, state.max_body_size)
    except UnsupportedContentEncodingError as exc:
        return _error(415, str(exc))
    except BodyTooLargeError as exc:
        return _error(413, str(exc))
    except BodyEncodingError as exc:
        return _error(400, str(exc))


def _media_type(request: Request, default: str) -> str:
    return (request.headers.get("content-type") or default).split(";")[0].strip().lower()


async def post_labels(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    media = _media_type(request, "application/json")
    if media not in _JSON_TYPES + _CSV_TYPES:
        return _error(
            415, f"unsupported Content-Type {media!r}: send labels as application/json or text/csv"
        )
    body = await _body(request)
    if isinstance(body, Response):
        return body
    parse = parse_csv_labels if media in _CSV_TYPES else parse_json_labels
    try:
        entries = await run_in_threadpool(parse, body)
    except TooManyLabelsError as exc:
        return _error(413, str(exc))
    except LabelUploadError as exc:
        return _error(400, f"invalid labels: {exc}")
    try:
        counts = await run_in_threadpool(_backend(request).ingest_labels, model, version, entries)
    except ValueError as exc:
        return _error(429, str(exc))
    logger.info("labels stored", extra={"model": model, "version": version, **counts})
    return JSONResponse({"model": model, "version": version, **counts})


async def get_performance(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    try:
        payload = await run_in_threadpool(_backend(request).performance, model, version)
    except _unknown_errors(request) as exc:
        return _error(404, _unknown_model_message(exc, model, version))
    return Response(
        json.dumps(payload, allow_nan=False, default=str), media_type="application/json"
    )


async def get_slo(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    thresholds = await run_in_threadpool(_backend(request).slo, model, version)
    return JSONResponse({"model": model, "version": version, "thresholds": thresholds})


async def put_slo(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    media = _media_type(request, "application/json")
    if media not in _JSON_TYPES:
        return _error(415, f"unsupported Content-Type {media!r}: SLO thresholds are JSON")
    body = await _body(request)
    if isinstance(body, Response):
        return body
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, f"SLO settings are not valid JSON: {exc}")
    if not isinstance(document, dict) or set(document) - {"thresholds", "task"}:
        return _error(400, 'SLO settings must be an object {"thresholds": {...}, "task": ...}')
    try:
        await run_in_threadpool(
            _backend(request).set_slo,
            model,
            version,
            document.get("thresholds"),
            task=document.get("task"),
        )
    except ValueError as exc:
        return _error(400, f"invalid SLO settings: {exc}")
    return JSONResponse(
        {"model": model, "version": version, "thresholds": document.get("thresholds") or {}}
    )


async def html_index(request: Request) -> Response:
    from modeltrace.drift.report_pages import index_page

    page = await run_in_threadpool(index_page, _backend(request))
    return HTMLResponse(page)


async def html_model(request: Request) -> Response:
    from modeltrace.drift.report_pages import model_page

    model, version = request.path_params["model"], request.path_params["version"]
    try:
        page = await run_in_threadpool(model_page, _backend(request), model, version)
    except _unknown_errors(request) as exc:
        message = _unknown_model_message(exc, model, version)
        return HTMLResponse(
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Not found</title>"
            f"</head><body><p>{_escape(message)}</p><p><a href='/'>All models</a></p></body>"
            "</html>",
            status_code=404,
        )
    return HTMLResponse(page)


def _escape(text: str) -> str:
    from html import escape

    return escape(text, quote=True)


def performance_routes() -> list[Route]:
    """The routes above, for ``build_app(..., extra_routes=...)``."""
    return [
        Route(f"{_MODEL_PATH}/labels", post_labels, methods=["POST"]),
        Route(f"{_MODEL_PATH}/performance", get_performance, methods=["GET"]),
        Route(f"{_MODEL_PATH}/slo", get_slo, methods=["GET"]),
        Route(f"{_MODEL_PATH}/slo", put_slo, methods=["PUT"]),
        Route("/", html_index, methods=["GET"]),
        Route("/models/{model}/versions/{version}", html_model, methods=["GET"]),
    ]
