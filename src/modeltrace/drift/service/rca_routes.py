"""Routes of ``modeltrace serve`` for root-cause analysis (read by ``modeltrace rca``).

* ``GET /api/v1/models/{model}/versions/{version}/spans/stats?since=1h``: calls,
  errors by ``error.type``, latency quantiles and example trace ids of the last
  ``since`` and of the period as long before it
  (``DriftAggregator.call_summary``, ``modeltrace.drift.call_stats``).
* ``GET .../drift/history?since=1h&limit=50``: the drift reports recorded in the
  last ``since``, newest first, each reduced to what a timeline needs
  (``generated_at``, ``dataset_drift``, ``drift_share``, ``n_samples`` and per
  feature ``name``, ``method``, ``score``, ``threshold``, ``p_value``,
  ``drifted``, ``missing_ratio``).

``since`` is a duration (``90s``, ``15m``, ``1h``, ``2d`` or seconds; default
1h); ``limit`` an integer from 1 to ``MAX_HISTORY_LIMIT``. 400 names a bad query
parameter, 404 an unknown model. Like every route but the probes, these need the
bearer token when one is set.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modeltrace.drift.service.app import ServiceState, _unknown_model_message
from modeltrace.drift.service.config import parse_duration

__all__ = ["DEFAULT_SINCE", "MAX_HISTORY_LIMIT", "rca_routes"]

_MODEL_PATH = "/api/v1/models/{model}/versions/{version}"
DEFAULT_SINCE = "1h"
DEFAULT_HISTORY_LIMIT = 50
MAX_HISTORY_LIMIT = 200
_HISTORY_FEATURE_FIELDS = (
    "name",
    "method",
    "score",
    "threshold",
    "p_value",
    "drifted",
    "missing_ratio",
)


class _BadQuery(ValueError):
    """A query parameter with an invalid value (answered 400)."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _since(request: Request) -> float:
    raw = request.query_params.get("since", DEFAULT_SINCE)
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise _BadQuery(f"query parameter since: {exc}") from None


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_HISTORY_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_HISTORY_LIMIT:
        raise _BadQuery(
            f"query parameter limit: expected an integer from 1 to {MAX_HISTORY_LIMIT}, got {raw!r}"
        )
    return value


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_call_stats(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    state = _state(request)
    try:
        since = _since(request)
    except _BadQuery as exc:
        return _error(400, str(exc))
    backend: Any = state.backend
    try:
        payload = await run_in_threadpool(backend.call_summary, model, version, since)
    except state.unknown_model_errors as exc:
        return _error(404, _unknown_model_message(exc, model, version))
    return JSONResponse(payload)


def compact_report(report: dict[str, Any]) -> dict[str, Any]:
    """A drift report's JSON reduced to its timeline fields."""
    return {
        "generated_at": report.get("generated_at"),
        "dataset_drift": report.get("dataset_drift"),
        "drift_share": report.get("drift_share"),
        "n_samples": report.get("n_samples"),
        "features": [
            {key: entry.get(key) for key in _HISTORY_FEATURE_FIELDS}
            for entry in report.get("features", [])
        ],
    }


def _history(backend: Any, model: str, version: str, since: float, limit: int) -> list[Any]:
    backend.reference(model, version)  # UnknownModelError / MissingReferenceError: 404
    cutoff = time.time() - since
    reports = [r.to_dict() for r in backend.history(model, version, limit)]
    return [compact_report(r) for r in reports if float(r["generated_at"]) >= cutoff]


async def get_drift_history(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    state = _state(request)
    try:
        since = _since(request)
        limit = _limit(request)
    except _BadQuery as exc:
        return _error(400, str(exc))
    try:
        reports = await run_in_threadpool(_history, state.backend, model, version, since, limit)
    except state.unknown_model_errors as exc:
        return _error(404, _unknown_model_message(exc, model, version))
    return JSONResponse(
        {"model": model, "version": version, "since_seconds": since, "reports": reports}
    )


def rca_routes() -> list[Route]:
    """The routes above, for ``build_app(..., extra_routes=...)``."""
    return [
        Route(f"{_MODEL_PATH}/spans/stats", get_call_stats, methods=["GET"]),
        Route(f"{_MODEL_PATH}/drift/history", get_drift_history, methods=["GET"]),
    ]
