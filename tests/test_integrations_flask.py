"""Flask integration on a real werkzeug server: span tree, tags, defaults, errors, exclusion."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import requests
from flask import Flask, jsonify, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.trace import SpanKind, StatusCode

import modeltrace
from integration_support import Telemetry, serve_wsgi
from modeltrace import semconv
from modeltrace.integrations.flask import instrument_app


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    tel = Telemetry().install()
    try:
        yield tel
    finally:
        tel.close()


def make_app() -> Flask:
    app = Flask("churn")

    @modeltrace.monitor(model="churn", feature_names=["tenure", "charges"])
    def predict(rows: np.ndarray) -> np.ndarray:
        if np.any(rows < 0):
            raise ValueError("negative input")
        return (rows[:, 1] > rows[:, 0]).astype(int)

    @modeltrace.monitor(model="upsell", version="9")
    def upsell(rows: np.ndarray) -> list[float]:
        return [0.5] * len(rows)

    @app.post("/predict")
    def predict_route():  # type: ignore[no-untyped-def]
        body = request.get_json(silent=True)
        if not isinstance(body, list):
            return jsonify(error="bad body"), 400
        rows = np.asarray(body, dtype=float)
        result = predict(rows).tolist()
        if request.args.get("upsell"):
            upsell(rows)
        return jsonify(result)

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        predict(np.array([[1.0, 2.0]]))
        return "ok"

    return app


def _instrumented(telemetry: Telemetry, **defaults: object) -> Flask:
    app = make_app()
    instrument_app(
        app,
        excluded_urls="healthz",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        **defaults,
    )
    return app


def _by_kind(spans: list, kind: SpanKind) -> list:
    return [span for span in spans if span.kind == kind]


def test_model_span_is_child_of_request_span_and_tags_it(telemetry: Telemetry) -> None:
    app = _instrumented(telemetry, version="7", sample_rate=1.0)
    with serve_wsgi(app) as base:
        response = requests.post(f"{base}/predict", json=[[1, 5], [9, 2]], timeout=5)
    assert response.json() == [1, 0]

    spans = telemetry.spans()
    (server,) = _by_kind(spans, SpanKind.SERVER)
    (model,) = [s for s in spans if s.name == "predict churn"]
    assert server.name == "POST /predict"
    assert model.kind == SpanKind.INTERNAL
    assert model.parent is not None and model.parent.span_id == server.context.span_id
    assert model.context.trace_id == server.context.trace_id
    # The request span is tagged with the model it called (version from defaults).
    assert server.attributes[semconv.MODEL_NAME] == "churn"
    assert server.attributes[semconv.MODEL_VERSION] == "7"
    assert server.attributes["http.status_code"] == 200
    # Model span attributes by value; sample_rate=1.0 came from monitor_defaults.
    attrs = model.attributes
    assert attrs[semconv.MODEL_NAME] == "churn"
    assert attrs[semconv.MODEL_VERSION] == "7"
    assert attrs[semconv.SAMPLE_RATE] == 1.0
    assert attrs[semconv.BATCH_SIZE] == 2
    assert tuple(attrs[semconv.SAMPLE_INDICES]) == (0, 1)
    assert tuple(attrs["ml.feature.tenure"]) == (1.0, 9.0)
    assert tuple(attrs["ml.feature.charges"]) == (5.0, 2.0)
    assert tuple(attrs[semconv.PREDICTION_VALUE]) == (1, 0)

    points = telemetry.metric_points()
    (predictions,) = points[semconv.METRIC_PREDICTIONS]
    assert predictions.value == 2
    assert dict(predictions.attributes) == {semconv.MODEL_NAME: "churn", semconv.MODEL_VERSION: "7"}
    (duration,) = points[semconv.METRIC_PREDICT_DURATION]
    assert duration.count == 1
    # The HTTP metrics come from the contrib instrumentation, untouched.
    http_duration = points.get("http.server.duration") or points["http.server.request.duration"]
    assert sum(point.count for point in http_duration) == 1


def test_first_model_tags_request_and_explicit_version_wins(telemetry: Telemetry) -> None:
    app = _instrumented(telemetry, version="7")
    with serve_wsgi(app) as base:
        requests.post(f"{base}/predict?upsell=1", json=[[1, 5]], timeout=5)
    spans = telemetry.spans()
    (server,) = _by_kind(spans, SpanKind.SERVER)
    upsell = next(s for s in spans if s.name == "predict upsell")
    assert upsell.attributes[semconv.MODEL_VERSION] == "9"  # decorator beats app defaults
    assert upsell.parent is not None and upsell.parent.span_id == server.context.span_id
    assert server.attributes[semconv.MODEL_NAME] == "churn"


def test_4xx_and_5xx_are_recorded(telemetry: Telemetry) -> None:
    app = _instrumented(telemetry)
    with serve_wsgi(app) as base:
        bad_request = requests.post(f"{base}/predict", data="nope", timeout=5)
        failing = requests.post(f"{base}/predict", json=[[-1, 5]], timeout=5)
    assert bad_request.status_code == 400
    assert failing.status_code == 500

    servers = {
        s.attributes["http.status_code"]: s for s in _by_kind(telemetry.spans(), SpanKind.SERVER)
    }
    assert set(servers) == {400, 500}
    # 4xx on a server span is not an error (HTTP semconv); no model call happened.
    assert servers[400].status.status_code == StatusCode.UNSET
    assert semconv.MODEL_NAME not in servers[400].attributes
    assert servers[500].status.status_code == StatusCode.ERROR

    (model,) = [s for s in telemetry.spans() if s.name == "predict churn"]
    assert model.status.status_code == StatusCode.ERROR
    assert model.attributes[semconv.ERROR_TYPE] == "ValueError"
    assert [event.name for event in model.events] == ["exception"]
    assert model.parent is not None and model.parent.span_id == servers[500].context.span_id

    (errors,) = telemetry.metric_points()[semconv.METRIC_PREDICT_ERRORS]
    assert errors.value == 1
    assert errors.attributes[semconv.ERROR_TYPE] == "ValueError"


def test_excluded_url_makes_no_spans_and_no_model_telemetry(telemetry: Telemetry) -> None:
    app = _instrumented(telemetry)
    with serve_wsgi(app) as base:
        assert requests.get(f"{base}/healthz", timeout=5).text == "ok"
        requests.post(f"{base}/predict", json=[[1, 5]], timeout=5)
    names = [span.name for span in telemetry.spans()]
    assert names.count("predict churn") == 1  # only the /predict one
    assert "GET /healthz" not in names
    (predictions,) = telemetry.metric_points()[semconv.METRIC_PREDICTIONS]
    assert predictions.value == 1


def test_excluded_urls_read_from_environment(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "healthz,ping")
    app = make_app()
    instrument_app(
        app, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    with serve_wsgi(app) as base:
        requests.get(f"{base}/healthz", timeout=5)
    assert telemetry.spans() == []


def test_already_instrumented_app_is_not_instrumented_twice(telemetry: Telemetry) -> None:
    app = make_app()
    FlaskInstrumentor.instrument_app(
        app, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    instrument_app(app, version="2")
    instrument_app(app, version="3")  # second call: no-op
    with serve_wsgi(app) as base:
        requests.post(f"{base}/predict", json=[[1, 5]], timeout=5)
    spans = telemetry.spans()
    (server,) = _by_kind(spans, SpanKind.SERVER)
    (model,) = [s for s in spans if s.name == "predict churn"]
    assert model.parent is not None and model.parent.span_id == server.context.span_id
    assert server.attributes[semconv.MODEL_VERSION] == "2"
    assert app._is_instrumented_by_opentelemetry is True


def test_invalid_arguments_raise_precise_errors() -> None:
    with pytest.raises(TypeError, match=r"flask\.Flask"):
        instrument_app(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown monitor default"):
        instrument_app(make_app(), sampel_rate=0.5)
    with pytest.raises(ValueError, match="sample_rate"):
        instrument_app(make_app(), sample_rate=2.0)
