"""DriftAggregator: known-truth drift through the real decorator, merging replicas,
persistence and crash replay, the ml.drift.* gauges, caps and errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import modeltrace
from drift_spans import SpanFactory, prediction_attributes, random_rows, to_request
from modeltrace import semconv
from modeltrace.drift import (
    DriftAggregator,
    MissingReferenceError,
    Reference,
    UnknownModelError,
)
from modeltrace.drift.otlp_fast import extract_request
from sdk_harness import Telemetry, data_points

ROWS_PER_SPAN = 8
SPAN_END_NS = 1_700_000_000_000_000_000


def _reference(seed: int = 0, n: int = 5000) -> Reference:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(random_rows(rng, n))
    return Reference.from_data(table, predictions=(table["plan"] == "pro").astype(int).to_numpy())


@pytest.fixture
def factory() -> Iterator[SpanFactory]:
    f = SpanFactory()
    yield f
    f.close()


def _payloads(
    factory: SpanFactory, n_spans: int, *, seed: int, shift: float = 0.0, per_request: int = 25
) -> list[bytes]:
    """Serialized OTLP requests of prediction spans of model churn/3."""
    rng = np.random.default_rng(seed)
    spans = []
    for _ in range(n_spans):
        rows = random_rows(rng, ROWS_PER_SPAN, shift)
        prediction = [int(p == "pro") for p in rows["plan"]]
        attrs = prediction_attributes("churn", "3", rows, rate=0.5, prediction=prediction)
        spans.append(factory.span("predict churn", attrs))
    return [
        to_request(spans[i : i + per_request]).SerializeToString()
        for i in range(0, len(spans), per_request)
    ]


def _summary(agg: DriftAggregator) -> list[tuple[Any, ...]]:
    report = agg.evaluate("churn", "3")
    return [
        (f.name, f.method, f.score, f.drifted, f.n_current, f.missing_ratio)
        for f in report.features
    ]


# --- known truth through the real decorator (embedded mode) ---------------------


def test_prediction_scores_are_not_reported_as_unknown_features() -> None:
    # Scores (ml.prediction.score) feed the label join; a reference without scores
    # must not turn them into an "unknown feature" data-quality finding.
    agg = DriftAggregator(":memory:")
    agg.set_reference("credit", "1", _reference(seed=1))
    tel = Telemetry(sample_rate=1.0, max_rows=ROWS_PER_SPAN, drift=agg)
    try:

        @modeltrace.monitor(model="credit", version="1")
        def score(frame: pd.DataFrame) -> dict[str, list[Any]]:
            return {"prediction": [1] * len(frame), "probability": [0.75] * len(frame)}

        rng = np.random.default_rng(3)
        for _ in range(40):
            score(pd.DataFrame(random_rows(rng, ROWS_PER_SPAN)))
        assert tel.handle.force_flush()
        span = tel.spans()[-1]
        assert semconv.PREDICTION_SCORE in span.attributes
        report = agg.evaluate("credit", "1")
    finally:
        tel.close()
    assert report.n_samples == 40 * ROWS_PER_SPAN
    assert [q for q in report.quality if q.signal == "unknown_features"] == []


def test_embedded_mode_flags_exactly_the_drifted_features() -> None:
    agg = DriftAggregator(":memory:")
    reference = _reference(seed=1)
    for version in ("clean", "age", "mix"):
        agg.set_reference("credit", version, reference)
    tel = Telemetry(sample_rate=1.0, max_rows=ROWS_PER_SPAN, drift=agg)
    try:

        def score(frame: pd.DataFrame) -> list[int]:
            return (frame["plan"] == "pro").astype(int).tolist()

        predictors = {
            v: modeltrace.monitor(model="credit", version=v)(score) for v in ("clean", "age", "mix")
        }
        rng = np.random.default_rng(2)
        for _ in range(150):
            clean = pd.DataFrame(random_rows(rng, ROWS_PER_SPAN))
            predictors["clean"](clean)
            shifted = pd.DataFrame(random_rows(rng, ROWS_PER_SPAN))
            shifted["age"] = shifted["age"] + 15.0  # 1.5 sigma
            predictors["age"](shifted)
            mixed = pd.DataFrame(random_rows(rng, ROWS_PER_SPAN))
            mixed["plan"] = rng.choice(["basic", "pro", "team"], ROWS_PER_SPAN, p=[0.1, 0.7, 0.2])
            predictors["mix"](mixed)
        assert tel.handle.force_flush()
        reports = {v: agg.evaluate("credit", v) for v in ("clean", "age", "mix")}
    finally:
        tel.close()
    assert reports["clean"].drifted_features == []
    assert reports["clean"].n_samples == 150 * ROWS_PER_SPAN
    assert reports["age"].drifted_features == ["age"]
    assert sorted(reports["mix"].drifted_features) == ["__prediction__", "plan"]
    age = reports["age"].feature("age")
    assert age.n_current == 150 * ROWS_PER_SPAN
    assert age.exemplar_trace_ids, "a drifted feature links to example traces"
    models = {m["model"]: m["versions"] for m in agg.models()}
    assert {v["version"]: v["spans"] for v in models["credit"]} == {
        "age": 150,
        "clean": 150,
        "mix": 150,
    }


# --- merging replicas ------------------------------------------------------------


def test_two_replicas_merged_equal_one_fed_everything(factory: SpanFactory) -> None:
    reference = _reference()
    payloads = _payloads(factory, 200, seed=3, shift=0.3)
    psi = {"*": {"method": "psi"}}  # a counts method: the comparison is exact
    single, left, right = (DriftAggregator(":memory:") for _ in range(3))
    for agg in (single, left, right):
        agg.set_reference("churn", "3", reference)
        agg.set_overrides("churn", "3", psi)
    for payload in payloads:
        assert single.ingest(payload).accepted == 25
    for i, payload in enumerate(payloads):
        (left if i % 2 else right).ingest(payload)
    left.merge(right)
    assert _summary(left) == _summary(single)
    merged, alone = left.window("churn", "3").current(), single.window("churn", "3").current()
    for name in alone:
        np.testing.assert_allclose(merged[name].counts, alone[name].counts, rtol=1e-12)
        assert merged[name].n == alone[name].n
    assert left.models() == single.models()
    # a model known only to the other replica is copied with its reference and overrides
    fresh = DriftAggregator(":memory:")
    fresh.merge(single)
    assert _summary(fresh) == _summary(single)


# --- persistence -----------------------------------------------------------------


def test_close_and_reopen_gives_the_same_report(tmp_path: Path, factory: SpanFactory) -> None:
    path = tmp_path / "drift.db"
    agg = DriftAggregator(path)
    agg.set_reference("churn", "3", _reference())
    for payload in _payloads(factory, 100, seed=4, shift=0.5):
        agg.ingest(payload)
    before = _summary(agg)
    models_before = agg.models()
    agg.close()
    again = DriftAggregator(path)
    assert _summary(again) == before
    assert again.models() == models_before
    assert len(again.history("churn", "3")) == 2  # one report before closing, one now
    again.close()


def test_crash_during_durable_ingestion_replays_exact_counts(
    tmp_path: Path, factory: SpanFactory
) -> None:
    path = tmp_path / "drift.db"
    payloads = _payloads(factory, 200, seed=5)
    agg = DriftAggregator(path, checkpoint_payloads=10_000, checkpoint_seconds=3600)
    agg.set_reference("churn", "3", _reference())
    results = agg.ingest_durable(payloads[:3])
    assert [r.accepted for r in results] == [25, 25, 25]
    agg.checkpoint()
    agg.ingest_durable(payloads[3:])
    expected = _summary(agg)
    agg.store.close()  # the process dies: no checkpoint of the last 5 requests
    reopened = DriftAggregator(path)
    (churn,) = reopened.models()
    (version,) = churn["versions"]
    assert (version["spans"], version["samples"], version["window_samples"]) == (
        200,
        200 * ROWS_PER_SPAN,
        200 * ROWS_PER_SPAN,
    )
    assert version["weighted_samples"] == pytest.approx(2 * 200 * ROWS_PER_SPAN)
    assert _summary(reopened) == expected
    reopened.checkpoint()
    assert reopened.store.inbox_size() == 0
    reopened.close()


def test_kill_9_after_acknowledged_durable_ingest(tmp_path: Path, factory: SpanFactory) -> None:
    path = tmp_path / "drift.db"
    blob_dir = tmp_path / "payloads"
    blob_dir.mkdir()
    for i, payload in enumerate(_payloads(factory, 100, seed=6)):
        (blob_dir / f"{i:03d}.bin").write_bytes(payload)
    _reference().save(tmp_path / "ref.json")
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from modeltrace.drift import DriftAggregator, Reference
        agg = DriftAggregator({str(path)!r}, checkpoint_payloads=2, checkpoint_seconds=3600)
        agg.set_reference("churn", "3", Reference.load({str(tmp_path / "ref.json")!r}))
        blobs = [p.read_bytes() for p in sorted(Path({str(blob_dir)!r}).iterdir())]
        for blob in blobs:
            agg.ingest_durable([blob])
        print("acknowledged", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.stdout.strip() == "acknowledged", proc.stderr
    assert proc.returncode == -9
    agg = DriftAggregator(path)
    (churn,) = agg.models()
    assert churn["versions"][0]["samples"] == 100 * ROWS_PER_SPAN
    assert agg.window("churn", "3").rows == 100 * ROWS_PER_SPAN
    agg.close()


# --- metrics ---------------------------------------------------------------------


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    return data_points(reader)


def test_gauges_publish_the_latest_report(factory: SpanFactory) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    agg = DriftAggregator(":memory:", meter_provider=provider)
    agg.set_reference("churn", "3", _reference())
    for payload in _payloads(factory, 100, seed=7, shift=1.0):
        agg.ingest(payload)
    points = _points(reader)  # collection evaluates the window that got data
    report = agg.latest_reports(refresh=False)[("churn", "3")]
    assert report.drifted_features  # the shift is visible
    base = {semconv.MODEL_NAME: "churn", semconv.MODEL_VERSION: "3"}

    # Dataset-level entries (__multivariate__) have one entry per method: key by both.
    def key(p: Any) -> tuple[str, str]:
        return p.attributes[semconv.FEATURE_NAME], p.attributes[semconv.DRIFT_METHOD]

    scores = {key(p): p for p in points[semconv.METRIC_DRIFT_SCORE]}
    detected = {key(p): p.value for p in points[semconv.METRIC_DRIFT_DETECTED]}
    missing = {
        p.attributes[semconv.FEATURE_NAME]: p.value for p in points[semconv.METRIC_MISSING_RATIO]
    }
    assert set(scores) == {(f.name, f.method) for f in report.features}
    for entry in report.features:
        point = scores[(entry.name, entry.method)]
        assert point.value == pytest.approx(entry.score)
        assert dict(point.attributes) == {
            **base,
            semconv.FEATURE_NAME: entry.name,
            semconv.DRIFT_METHOD: entry.method,
        }
        assert detected[(entry.name, entry.method)] == int(entry.drifted)
        assert missing[entry.name] == pytest.approx(entry.missing_ratio)
    (share,) = points[semconv.METRIC_DRIFT_SHARE]
    assert dict(share.attributes) == base
    assert share.value == pytest.approx(report.drift_share)
    (samples,) = points[semconv.METRIC_DRIFT_SAMPLES]
    assert samples.value == 100 * ROWS_PER_SPAN
    provider.shutdown()


# --- models, caps, errors ----------------------------------------------------------


def test_unknown_and_unreferenced_models(factory: SpanFactory) -> None:
    agg = DriftAggregator(":memory:")
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        agg.evaluate("nope", "1")
    payloads = _payloads(factory, 50, seed=8)
    agg.ingest(payloads[0])
    with pytest.raises(MissingReferenceError, match="has data but no reference"):
        agg.evaluate("churn", "3")
    (entry,) = agg.models()
    assert entry["versions"][0]["has_reference"] is False
    assert entry["versions"][0]["spans"] == 25
    agg.set_reference("churn", "3", _reference())
    agg.ingest(payloads[1])
    report = agg.evaluate("churn", "3")
    assert report.n_samples == 25 * ROWS_PER_SPAN  # only rows after the reference
    assert agg.models()[0]["versions"][0]["spans"] == 50


def test_model_cap_counts_the_excess(factory: SpanFactory) -> None:
    agg = DriftAggregator(":memory:", max_models=2)
    spans = [
        factory.span("predict m", prediction_attributes(f"m{i}", "1", {"x": [1.0, 2.0]}))
        for i in range(5)
    ]
    result = agg.ingest(spans)
    assert (result.accepted, result.rejected) == (2, 3)
    assert "model limit (2)" in (result.reason or "")
    assert agg.dropped() == {"spans": 3, "models": ["m2/1", "m3/1", "m4/1"]}
    assert len(agg.models()) == 2


def test_rows_across_panes_go_to_their_panes() -> None:
    agg = DriftAggregator(":memory:", pane_seconds=60, window_seconds=600)
    agg.set_reference("churn", "3", _reference())
    factory = SpanFactory()
    spans = []
    rng = np.random.default_rng(9)
    for minute in range(5):
        span = factory.span(
            "predict churn", prediction_attributes("churn", "3", random_rows(rng, 4))
        )
        span._end_time = SPAN_END_NS + minute * 60 * 10**9  # type: ignore[attr-defined]
        spans.append(span)
    factory.close()
    agg.ingest(spans)
    window = agg.window("churn", "3")
    assert [p.rows for p in window.panes] == [4] * 5
    assert agg.evaluate("churn", "3").n_samples == 20


def test_span_processor_never_blocks_and_counts_drops(factory: SpanFactory) -> None:
    agg = DriftAggregator(":memory:")
    processor = agg.span_processor(max_queue=5, batch_size=1000, interval=60.0)
    span = factory.span("predict m", prediction_attributes("m", "1", {"x": 1.0}))
    other = factory.span("GET /", {"http.method": "GET"})
    for _ in range(12):
        processor.on_end(span)
        processor.on_end(other)
    assert processor.dropped_spans == 7
    assert processor.force_flush()
    assert agg.models()[0]["versions"][0]["spans"] == 5
    agg.close()  # shuts the processor down
    processor.on_end(span)  # after shutdown: ignored, never raises
    assert processor.dropped_spans == 7


def test_invalid_payload_and_arguments() -> None:
    agg = DriftAggregator(":memory:")
    result = agg.ingest(b"\xff\x00garbage")
    assert (result.accepted, result.rejected) == (0, 0)
    assert "not an OTLP trace request" in (result.reason or "")
    (durable,) = agg.ingest_durable([b"\xff\x00garbage"])
    assert durable.reason == result.reason
    with pytest.raises(ValueError, match="window_seconds"):
        DriftAggregator(":memory:", pane_seconds=600, window_seconds=60)
    with pytest.raises(ValueError, match="max_models"):
        DriftAggregator(":memory:", max_models=0)
    with pytest.raises(TypeError, match="Reference"):
        agg.set_reference("m", "1", {"not": "a reference"})  # type: ignore[arg-type]
    assert math.isfinite(agg.pane_seconds)
    agg.close()
    with pytest.raises(RuntimeError, match="closed"):
        agg.ingest([])


def test_durable_results_are_per_payload_in_order(factory: SpanFactory) -> None:
    agg = DriftAggregator(":memory:", checkpoint_payloads=2)
    agg.set_reference("churn", "3", _reference())
    good = _payloads(factory, 10, seed=10, per_request=5)
    results = agg.ingest_durable([good[0], b"\xff\xff", good[1]])
    assert [(r.accepted, r.rejected, r.rows) for r in results] == [
        (5, 0, 40),
        (0, 0, 0),
        (5, 0, 40),
    ]
    assert agg.store.inbox_size() == 0  # the automatic checkpoint ran (3 >= 2 payloads)
    assert os.fspath(agg.store.path) == ":memory:"


def test_durable_ingest_uses_given_extractions_and_replays_the_bytes(
    tmp_path: Path, factory: SpanFactory
) -> None:
    payloads = _payloads(factory, 100, seed=8)
    plain = DriftAggregator(tmp_path / "plain.db")
    plain.set_reference("churn", "3", _reference())
    expected = plain.ingest_durable(payloads)
    given = DriftAggregator(tmp_path / "given.db", checkpoint_payloads=10_000)
    given.set_reference("churn", "3", _reference())
    prepared: list[object | None] = [extract_request(p) for p in payloads]
    prepared[1] = None  # no extraction for this one: the writer extracts it
    assert all(p is not None for i, p in enumerate(prepared) if i != 1)
    assert given.ingest_durable(payloads, prepared) == expected
    assert _summary(given) == _summary(plain)
    with pytest.raises(ValueError, match="1 extractions given for 4 payloads"):
        given.ingest_durable(payloads, prepared[:1])
    given.store.close()  # crash: the inbox bytes are replayed, re-extracted
    reopened = DriftAggregator(tmp_path / "given.db")
    assert _summary(reopened) == _summary(plain)
    reopened.close()
    plain.close()
