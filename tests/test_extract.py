"""Span / OTLP request -> columns: values, weights, trace ids, times, labels, junk."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from drift_spans import SpanFactory, otlp_request, prediction_attributes, to_request
from modeltrace import semconv
from modeltrace.drift.extract import (
    PREDICTION_COLUMN,
    SCORE_COLUMN,
    InvalidPayloadError,
    extract,
    extract_otlp,
    extract_spans,
)

END_NS = 1_700_000_000_123_000_000


@pytest.fixture
def factory() -> Iterator[SpanFactory]:
    f = SpanFactory()
    yield f
    f.close()


def _assert_same_column(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype
    if a.dtype == object:
        assert a.tolist() == b.tolist()
    else:
        np.testing.assert_array_equal(a, b)


def test_otlp_columns_values_weights_ids_and_times() -> None:
    tid = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    request = otlp_request(
        [
            (
                "predict churn",
                {
                    semconv.MODEL_NAME: "churn",
                    semconv.MODEL_VERSION: "3",
                    semconv.SAMPLE_RATE: 0.25,
                    semconv.SAMPLE_INDICES: [0, 2, 5],
                    "ml.feature.age": [31.5, math.nan, 40.0],
                    "ml.feature.plan": ["pro", "", "basic"],
                    "ml.feature.kids": [0, 2, 300],  # ints, one >= 128 (slow path)
                    "ml.feature.vip": [True, False, True],
                    semconv.PREDICTION_VALUE: [1, 0, 1],
                    semconv.PREDICTION_SCORE: [0.9, 0.6, 0.7],
                },
            ),
            (
                "predict churn",
                {
                    semconv.MODEL_NAME: "churn",
                    semconv.MODEL_VERSION: "3",
                    semconv.SAMPLE_RATE: 1.0,
                    semconv.SAMPLE_INDICES: [0],
                    "ml.feature.age": 50.25,
                    "ml.feature.plan": "team",
                    # kids and vip not captured on this span: missing for its row
                    semconv.PREDICTION_VALUE: 0,
                },
            ),
            ("GET /predict", {"http.method": "GET"}),
        ],
        trace_id=tid,
        end_ns=END_NS,
    )
    for payload in (request, request.SerializeToString()):
        result = extract(payload)
        assert (result.accepted, result.rejected, result.ignored) == (2, 0, 1)
        (batch,) = result.batches.values()
        assert (batch.model, batch.version, batch.rows, batch.spans) == ("churn", "3", 4, 2)
        np.testing.assert_array_equal(batch.columns["age"], [31.5, np.nan, 40.0, 50.25])
        assert batch.columns["plan"].dtype == object
        assert batch.columns["plan"].tolist() == ["pro", None, "basic", "team"]
        np.testing.assert_array_equal(batch.columns["kids"], [0.0, 2.0, 300.0, np.nan])
        np.testing.assert_array_equal(batch.columns["vip"], [1.0, 0.0, 1.0, np.nan])
        np.testing.assert_array_equal(batch.columns[PREDICTION_COLUMN], [1.0, 0.0, 1.0, 0.0])
        np.testing.assert_array_equal(batch.columns[SCORE_COLUMN], [0.9, 0.6, 0.7, np.nan])
        np.testing.assert_array_equal(batch.weights, [4.0, 4.0, 4.0, 1.0])
        assert batch.trace_ids.tolist() == [tid.hex()] * 4
        np.testing.assert_allclose(batch.timestamps, [END_NS / 1e9] * 4, rtol=0, atol=1e-6)


def test_long_arrays_and_large_indices() -> None:
    values = np.linspace(-5.0, 5.0, 300)
    request = otlp_request(
        [
            (
                "predict big",
                {
                    semconv.MODEL_NAME: "big",
                    semconv.SAMPLE_INDICES: list(range(1000, 1300)),
                    "ml.feature.x": values.tolist(),
                },
            )
        ]
    )
    result = extract_otlp(request.SerializeToString())
    batch = result.batches[("big", "")]
    np.testing.assert_array_equal(batch.columns["x"], values)
    np.testing.assert_array_equal(batch.weights, np.ones(300))  # no rate: weight 1


def test_sdk_spans_and_their_otlp_export_give_the_same_columns(factory: SpanFactory) -> None:
    rng = np.random.default_rng(7)
    spans = []
    for n in (1, 3, 8, 1, 5):
        features = {
            "age": rng.normal(40, 10, n).tolist(),
            "plan": rng.choice(["a", "b", ""], n).tolist(),
            "clicks": rng.integers(0, 500, n).tolist(),
        }
        if n == 1:
            features = {k: v[0] for k, v in features.items()}
        attrs = prediction_attributes(
            "m", "1", features, rate=0.5, prediction=rng.random(n).tolist() if n > 1 else 0.3
        )
        spans.append(factory.span("predict m", attrs))
    spans.append(
        factory.span(
            "label m",
            {
                semconv.MODEL_NAME: "m",
                semconv.MODEL_VERSION: "1",
                semconv.PREDICTION_ID: "p-1",
                semconv.LABEL_VALUE: [1, 0],
            },
        )
    )
    from_sdk = extract_spans(spans)
    from_otlp = extract_otlp(to_request(spans).SerializeToString())
    assert from_sdk.accepted == from_otlp.accepted == 6
    a, b = from_sdk.batches[("m", "1")], from_otlp.batches[("m", "1")]
    assert a.rows == b.rows == 18
    assert sorted(a.columns) == sorted(b.columns) == ["__prediction__", "age", "clicks", "plan"]
    for name in a.columns:
        _assert_same_column(a.columns[name], b.columns[name])
    np.testing.assert_array_equal(a.weights, np.full(18, 2.0))
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.trace_ids.tolist() == b.trace_ids.tolist()
    assert a.trace_ids[0] == f"{spans[0].context.trace_id:032x}"
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    for extraction in (from_sdk, from_otlp):
        (label,) = extraction.labels
        assert (label.model, label.version, label.prediction_id, label.labels) == (
            "m",
            "1",
            "p-1",
            (1, 0),
        )


def _junk_spans() -> list[tuple[str, dict[str, object]]]:
    base = {semconv.MODEL_NAME: "m", semconv.MODEL_VERSION: "1"}
    return [
        ("predict m", {**base, "ml.feature.a": [1.0, 2.0], "ml.feature.b": [1.0, 2.0, 3.0]}),
        ("predict m", {**base, "ml.feature.a": [1.0, 2.0], "ml.feature.b": 5.0}),
        ("predict m", {**base, "ml.feature.a": {"nested": 1.0}}),
        ("predict m", {**base, semconv.SAMPLE_RATE: 0.0, "ml.feature.a": 1.0}),
        ("predict m", {**base, semconv.SAMPLE_RATE: "high", "ml.feature.a": 1.0}),
        ("predict m", {**base, semconv.SAMPLE_INDICES: [0, 1, 2], "ml.feature.a": [1.0, 2.0]}),
        ("predict m", {semconv.MODEL_NAME: 42, "ml.feature.a": 1.0}),
        ("predict m", {**base, "ml.feature.": 1.0}),
        ("predict m", {**base, "ml.feature.__prediction__": 1.0}),
        ("label m", {**base, semconv.LABEL_VALUE: 1}),  # no prediction id
        ("predict m", {"ml.feature.a": 1.0}),  # not a model span: ignored
        ("predict m", {**base, "ml.feature.a": [3.0, 4.0]}),  # the one good span
    ]


def test_junk_is_counted_with_reasons_never_raised() -> None:
    result = extract_otlp(otlp_request(_junk_spans()).SerializeToString())
    assert (result.accepted, result.rejected, result.ignored) == (1, 10, 1)
    assert result.reasons["ragged arrays"] == 2
    assert result.reasons["invalid ml.sample.rate"] == 2
    assert result.reasons["ml.sample.indices length does not match the captured values"] == 1
    assert result.reasons["invalid ml.model.name"] == 1
    assert result.reasons["missing ml.prediction.id"] == 1
    assert result.reasons["empty feature name"] == 1
    assert result.reasons["reserved feature name __prediction__"] == 1
    assert any("undecodable" in r or "unsupported" in r for r in result.reasons)
    assert "10 span(s) rejected" in result.reason_text()
    np.testing.assert_array_equal(result.batches[("m", "1")].columns["a"], [3.0, 4.0])


def test_sdk_junk_is_counted(factory: SpanFactory) -> None:
    spans = [
        factory.span(name, attrs)
        for name, attrs in _junk_spans()
        if not any(isinstance(v, dict) for v in attrs.values())
    ]
    result = extract_spans([*spans, "not a span"])
    assert (result.accepted, result.ignored) == (1, 1)
    assert result.rejected == 10  # 9 bad spans + the string
    assert result.reasons["not a ReadableSpan"] == 1


def test_spans_without_captured_rows_are_counted() -> None:
    request = otlp_request([("predict m", {semconv.MODEL_NAME: "m", semconv.SAMPLE_RATE: 0.1})] * 3)
    result = extract_otlp(request)
    batch = result.batches[("m", "")]
    assert (result.accepted, batch.spans, batch.rows) == (3, 3, 0)


def test_invalid_payloads() -> None:
    with pytest.raises(InvalidPayloadError):
        extract_otlp(b"\xff\xff\xff not protobuf")
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    with pytest.raises(InvalidPayloadError, match="not an ExportTraceServiceRequest"):
        extract_otlp(ExportMetricsServiceRequest())
    with pytest.raises(TypeError, match="ReadableSpan"):
        extract(42)
    assert extract(b"").accepted == 0  # an empty request is a valid, empty request
