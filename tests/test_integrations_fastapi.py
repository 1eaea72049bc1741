"""FastAPI integration on a real uvicorn server: pydantic features, 422, DI, sync/async, errors."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Annotated

import pytest
import requests
from fastapi import Depends, FastAPI, HTTPException
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

import modeltrace
from integration_support import Telemetry, serve_asgi
from modeltrace import semconv
from modeltrace.integrations.fastapi import instrument_app


class Customer(BaseModel):
    tenure: float
    plan: str


def rate() -> float:
    return 2.0


Rate = Annotated[float, Depends(rate)]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    tel = Telemetry().install(sample_rate=1.0)
    try:
        yield tel
    finally:
        tel.close()


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/async")
    @modeltrace.monitor(model="churn")
    async def predict_async(customer: Customer, factor: Rate) -> dict[str, float]:
        if customer.tenure < 0:
            raise HTTPException(status_code=409, detail="negative tenure")
        return {"score": customer.tenure * factor}

    @app.post("/sync")
    @modeltrace.monitor(model="churn-sync")
    def predict_sync(customer: Customer, factor: Rate) -> dict[str, float]:
        if customer.tenure > 1000:
            raise RuntimeError("model blew up")
        return {"score": customer.tenure * factor}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _instrumented(telemetry: Telemetry, **defaults: object) -> FastAPI:
    app = make_app()
    instrument_app(
        app,
        excluded_urls="healthz",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        **defaults,
    )
    return app


def _servers(telemetry: Telemetry) -> list:
    return [s for s in telemetry.spans() if s.kind == SpanKind.SERVER]


@pytest.mark.parametrize(("path", "model"), [("/async", "churn"), ("/sync", "churn-sync")])
def test_pydantic_body_fields_are_features_and_di_works(
    telemetry: Telemetry, path: str, model: str
) -> None:
    app = _instrumented(telemetry, version="5")
    with serve_asgi(app) as base:
        response = requests.post(f"{base}{path}", json={"tenure": 3, "plan": "pro"}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"score": 6.0}  # the dependency supplied factor=2

    (server,) = _servers(telemetry)
    (span,) = [s for s in telemetry.spans() if s.name == f"predict {model}"]
    assert span.parent is not None and span.parent.span_id == server.context.span_id
    assert span.attributes["ml.feature.tenure"] == 3.0
    assert span.attributes["ml.feature.plan"] == "pro"
    assert "ml.feature.factor" not in span.attributes
    assert span.attributes[semconv.MODEL_VERSION] == "5"
    assert server.attributes[semconv.MODEL_NAME] == model
    assert server.attributes[semconv.MODEL_VERSION] == "5"
    (predictions,) = telemetry.metric_points()[semconv.METRIC_PREDICTIONS]
    assert predictions.value == 1


def test_validation_422_still_answered_and_no_model_span(telemetry: Telemetry) -> None:
    app = _instrumented(telemetry)
    with serve_asgi(app) as base:
        response = requests.post(f"{base}/async", json={"tenure": "old"}, timeout=5)
    assert response.status_code == 422
    fields = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert fields == {("body", "tenure"), ("body", "plan")}
    (server,) = _servers(telemetry)
    assert server.attributes["http.status_code"] == 422
    assert not [s for s in telemetry.spans() if s.name.startswith("predict ")]


def test_signature_and_coroutine_kind_are_intact() -> None:
    app = make_app()
    endpoints = {route.path: route.endpoint for route in app.routes if hasattr(route, "endpoint")}
    assert inspect.iscoroutinefunction(endpoints["/async"])
    assert not inspect.iscoroutinefunction(endpoints["/sync"])
    assert list(inspect.signature(endpoints["/sync"]).parameters) == ["customer", "factor"]


def test_4xx_and_5xx_recorded(telemetry: Telemetry) -> None:
    app = _instrumented(telemetry)
    with serve_asgi(app) as base:
        conflict = requests.post(f"{base}/async", json={"tenure": -1, "plan": "a"}, timeout=5)
        crash = requests.post(f"{base}/sync", json={"tenure": 5000, "plan": "a"}, timeout=5)
    assert conflict.status_code == 409
    assert crash.status_code == 500

    servers = {s.attributes["http.status_code"]: s for s in _servers(telemetry)}
    assert set(servers) == {409, 500}
    assert servers[409].status.status_code == StatusCode.UNSET
    assert servers[500].status.status_code == StatusCode.ERROR
    models = {s.name: s for s in telemetry.spans() if s.name.startswith("predict ")}
    assert models["predict churn"].attributes[semconv.ERROR_TYPE] == "HTTPException"
    assert models["predict churn-sync"].attributes[semconv.ERROR_TYPE] == "RuntimeError"
    assert models["predict churn-sync"].status.status_code == StatusCode.ERROR
    errors = telemetry.metric_points()[semconv.METRIC_PREDICT_ERRORS]
    assert sorted(point.attributes[semconv.ERROR_TYPE] for point in errors) == [
        "HTTPException",
        "RuntimeError",
    ]


def test_excluded_url_makes_no_spans(telemetry: Telemetry) -> None:
    app = _instrumented(telemetry)
    with serve_asgi(app) as base:
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    assert telemetry.spans() == []


def test_already_instrumented_app_keeps_one_server_span(telemetry: Telemetry) -> None:
    app = make_app()
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        exclude_spans=["receive", "send"],
    )
    instrument_app(app)
    instrument_app(app)  # no-op
    with serve_asgi(app) as base:
        requests.post(f"{base}/sync", json={"tenure": 1, "plan": "a"}, timeout=5)
    (server,) = _servers(telemetry)
    (model,) = [s for s in telemetry.spans() if s.name == "predict churn-sync"]
    assert model.parent is not None and model.parent.span_id == server.context.span_id
    assert server.attributes[semconv.MODEL_NAME] == "churn-sync"


def test_invalid_arguments() -> None:
    with pytest.raises(TypeError, match=r"fastapi\.FastAPI"):
        instrument_app(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown monitor default"):
        instrument_app(make_app(), model="x")
