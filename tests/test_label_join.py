"""Delayed labels: the join buffer, the aggregator's durable label path and realized
performance checked against scikit-learn on the same joined rows."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sklearn import metrics as skm

from drift_spans import otlp_request
from modeltrace import semconv
from modeltrace.drift import DriftAggregator, Reference
from modeltrace.drift.extract import extract
from modeltrace.drift.label_upload import (
    LabelEntry,
    LabelUploadError,
    TooManyLabelsError,
    parse_csv_labels,
    parse_json_labels,
)
from modeltrace.drift.labels import JoinBuffer
from sdk_harness import data_points

MODEL, VERSION = "churn", "3"


def _prediction(
    pid: str,
    values: list[Any],
    *,
    scores: list[float] | None = None,
    rows: list[int] | None = None,
    rate: float = 1.0,
    model: str = MODEL,
) -> tuple[str, dict[str, Any]]:
    attrs: dict[str, Any] = {
        semconv.MODEL_NAME: model,
        semconv.MODEL_VERSION: VERSION,
        semconv.PREDICTION_ID: pid,
        semconv.SAMPLE_RATE: rate,
        semconv.SAMPLE_INDICES: rows if rows is not None else list(range(len(values))),
        semconv.PREDICTION_VALUE: values,
        semconv.FEATURE_PREFIX + "x": [float(i) for i in range(len(values))],
    }
    if scores is not None:
        attrs[semconv.PREDICTION_SCORE] = scores
    return (semconv.PREDICT_SPAN_PREFIX + model, attrs)


def _uncaptured(pid: str) -> tuple[str, dict[str, Any]]:
    attrs = {
        semconv.MODEL_NAME: MODEL,
        semconv.MODEL_VERSION: VERSION,
        semconv.PREDICTION_ID: pid,
        semconv.SAMPLE_RATE: 0.1,
        semconv.BATCH_SIZE: 1,
    }
    return (semconv.PREDICT_SPAN_PREFIX + MODEL, attrs)


def _label(pid: str, labels: Any, model: str = MODEL) -> tuple[str, dict[str, Any]]:
    attrs = {
        semconv.MODEL_NAME: model,
        semconv.MODEL_VERSION: VERSION,
        semconv.PREDICTION_ID: pid,
        semconv.LABEL_VALUE: labels,
    }
    return (semconv.LABEL_SPAN_PREFIX + model, attrs)


def _bytes(spans: list[tuple[str, dict[str, Any]]], end: float | None = None) -> bytes:
    end_ns = int((time.time() if end is None else end) * 1e9)
    return otlp_request(spans, end_ns=end_ns).SerializeToString()


# --- the join ----------------------------------------------------------------------


def test_labels_after_and_before_their_predictions_join() -> None:
    agg = DriftAggregator(":memory:")
    # a batch of 3 rows of which rows 0 and 2 were captured
    agg.ingest(_bytes([_prediction("a", [1.0, 0.0], rows=[0, 2])]))
    agg.ingest(_bytes([_label("a", [1, 1, 0])]))  # row 1 was not captured
    counts = agg.label_counts(MODEL, VERSION)
    assert (counts["matched"], counts["not_captured"], counts["pending"]) == (2, 1, 0)
    # the label comes first, then its prediction
    agg.ingest(_bytes([_label("b", 0)]))
    assert agg.label_counts(MODEL, VERSION)["pending"] == 1
    agg.ingest(_bytes([_prediction("b", [1.0])]))
    counts = agg.label_counts(MODEL, VERSION)
    assert (counts["matched"], counts["pending"], counts["predictions_waiting"]) == (3, 0, 0)
    # a call that captured no row: its label cannot join and is counted as such
    agg.ingest(_bytes([_uncaptured("c")]))
    agg.ingest(_bytes([_label("c", 1)]))
    assert agg.label_counts(MODEL, VERSION)["not_captured"] == 2
    perf = agg.performance(MODEL, VERSION)
    # rows: a0 1/1 right, a2 0/0 right, b 1 vs 0 wrong
    assert perf["realized"]["accuracy"] == pytest.approx(2 / 3)
    assert perf["label_coverage"] == pytest.approx(1.0)
    assert perf["labels"]["matched"] == 3
    agg.close()


def test_duplicates_last_label_wins_and_are_counted() -> None:
    agg = DriftAggregator(":memory:")
    agg.ingest(_bytes([_prediction("a", [1.0])]))
    agg.ingest(_bytes([_label("a", 0)]))
    assert agg.performance(MODEL, VERSION)["realized"]["accuracy"] == 0.0
    agg.ingest(_bytes([_label("a", 1)]))
    perf = agg.performance(MODEL, VERSION)
    assert perf["realized"]["accuracy"] == 1.0
    assert (perf["labels"]["matched"], perf["labels"]["duplicates"]) == (1, 1)
    # duplicates while pending, and inside one bulk upload
    result = agg.ingest_labels(
        MODEL, VERSION, [LabelEntry("z", 0, 1.0), LabelEntry("z", 0, 0.0), LabelEntry("z", 1, 1)]
    )
    assert result == {
        "accepted": 2,
        "matched": 0,
        "pending": 2,
        "duplicates": 1,
        "not_captured": 0,
        "late": 0,
    }
    agg.ingest(_bytes([_prediction("z", [0.0, 1.0])]))
    perf = agg.performance(MODEL, VERSION)
    assert perf["realized"]["accuracy"] == 1.0  # row 0 labelled 0.0 (the last), row 1 labelled 1
    assert perf["labels"]["duplicates"] == 2
    agg.close()


def test_unknown_ids_ttl_expiry_and_late_labels() -> None:
    buffer = JoinBuffer(ttl_seconds=100.0)
    assert buffer.add_labels("ghost", [1], now=1000.0) == 1
    assert buffer.pending_labels == 1
    buffer.expire(now=1050.0)
    assert buffer.pending_labels == 1  # still within the TTL
    buffer.expire(now=1101.0)
    assert (buffer.pending_labels, buffer.counters.unmatched) == (0, 1)

    agg = DriftAggregator(":memory:", label_ttl_seconds=3600.0)
    old = time.time() - 7200.0
    agg.ingest(_bytes([_prediction("old", [1.0, 0.0])], end=old))
    agg.ingest(_bytes([_prediction("new", [1.0])]))
    agg.checkpoint()  # expires what is past the TTL
    counts = agg.label_counts(MODEL, VERSION)
    assert (counts["expired"], counts["predictions_buffered"]) == (2, 1)
    agg.ingest(_bytes([_label("old", [1, 0])]))
    counts = agg.label_counts(MODEL, VERSION)
    assert (counts["late"], counts["pending"], counts["matched"]) == (2, 0, 0)
    agg.close()


def test_capacity_bounds_evict_oldest_and_count() -> None:
    buffer = JoinBuffer(max_rows=10, max_pending=5)
    batch = extract(_bytes([_prediction(f"p{i}", [1.0, 0.0]) for i in range(8)])).batches[
        (MODEL, VERSION)
    ]
    buffer.add_predictions(batch, now=0.0)
    assert buffer.rows == 10
    assert buffer.counters.evicted == 6
    buffer.add_labels("p0", [1, 0], now=1.0)  # its prediction was pushed out
    assert buffer.counters.late == 2
    for i in range(4):
        buffer.add_labels(f"u{i}", [1, 1], now=2.0)
    assert buffer.pending_labels <= 5
    assert buffer.counters.unmatched == 8 - buffer.pending_labels
    restored = JoinBuffer.from_bytes(buffer.to_bytes(), max_rows=10, max_pending=5)
    assert restored.counts() == buffer.counts()


def test_bulk_upload_parsing_names_the_entry_or_line() -> None:
    entries = parse_json_labels(
        b'{"labels": [{"prediction_id": "a", "label": 1}, {"prediction_id": "b", "row": 2, '
        b'"label": "yes"}]}'
    )
    assert entries == [LabelEntry("a", 0, 1.0), LabelEntry("b", 2, "yes")]
    csv_entries = parse_csv_labels(b"label,prediction_id,row\n1,a,0\nno,b,3\n\n")
    assert csv_entries == [LabelEntry("a", 0, 1.0), LabelEntry("b", 3, "no")]
    assert parse_csv_labels(b"prediction_id,label\nx,0.5\n") == [LabelEntry("x", 0, 0.5)]
    cases = [
        (parse_json_labels, b"[1]", 'object with a "labels" array'),
        (parse_json_labels, b'{"labels": [{"label": 1}]}', "labels[0]: prediction_id is missing"),
        (parse_json_labels, b'{"labels": [{"prediction_id": "a"}]}', "labels[0]: label is missing"),
        (
            parse_json_labels,
            b'{"labels": [{"prediction_id": "a", "label": 1}, '
            b'{"prediction_id": "b", "row": -1, "label": 1}]}',
            "labels[1]: row must be in",
        ),
        (
            parse_json_labels,
            b'{"labels": [{"prediction_id": "a", "label": [1]}]}',
            "labels[0]: label",
        ),
        (parse_csv_labels, b"id,label\n", "line 1: the header has no prediction_id"),
        (parse_csv_labels, b"prediction_id,row,label\na,0,1\nb,x,1\n", "line 3: row must be"),
        (parse_csv_labels, b"prediction_id,label\na,1,2\n", "line 2: expected 2 fields"),
        (parse_csv_labels, b"prediction_id,label\n,1\n", "line 2: prediction_id"),
    ]
    for parse, body, message in cases:
        with pytest.raises(LabelUploadError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse(body)
    too_many = "prediction_id,label\n" + "a,1\n" * 100_001
    with pytest.raises(TooManyLabelsError):
        parse_csv_labels(too_many.encode())


# --- durability ------------------------------------------------------------------------


def _summary(agg: DriftAggregator) -> tuple[Any, ...]:
    perf = agg.performance(MODEL, VERSION)
    return (perf["labels"], perf["realized"], perf["label_coverage"])


def test_restart_in_the_middle_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    rng = np.random.default_rng(3)
    preds = rng.integers(0, 2, 60).astype(float)
    truth = np.where(rng.random(60) < 0.8, preds, 1 - preds)
    agg = DriftAggregator(path, checkpoint_payloads=10_000, checkpoint_seconds=3600)
    agg.ingest_durable([_bytes([_prediction(f"p{i}", [preds[i]]) for i in range(40)])])
    agg.ingest_durable([_bytes([_label(f"p{i}", truth[i]) for i in range(0, 50, 2)])])
    agg.checkpoint()
    # after the checkpoint: more predictions, label spans and a bulk upload, then a crash
    agg.ingest_durable([_bytes([_prediction(f"p{i}", [preds[i]]) for i in range(40, 60)])])
    agg.ingest_durable([_bytes([_label(f"p{i}", truth[i]) for i in range(1, 30, 2)])])
    agg.ingest_labels(MODEL, VERSION, [LabelEntry(f"p{i}", 0, truth[i]) for i in range(30, 60)])
    expected = _summary(agg)
    # 25 + 15 + 30 labels of 60 rows, 10 of them twice (the bulk upload repeats evens 30..48)
    assert (expected[0]["matched"], expected[0]["duplicates"], expected[0]["pending"]) == (
        60,
        10,
        0,
    )
    agg.store.close()  # the process dies: nothing after the checkpoint was checkpointed
    reopened = DriftAggregator(path)
    assert _summary(reopened) == expected
    reopened.close()  # a clean close checkpoints the joins: reopening gives the same again
    again = DriftAggregator(path)
    assert _summary(again) == expected
    assert again.store.inbox_size() == 0
    again.close()


def test_schema_1_store_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    DriftAggregator(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE join_states")
    conn.execute("DROP TABLE performance_settings")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    ro = DriftAggregator(path, read_only=True)  # a read-only open of a schema-1 store works
    ro.close()
    agg = DriftAggregator(path)
    agg.set_slo(MODEL, VERSION, {"accuracy": 0.9})
    agg.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    conn.close()
    assert DriftAggregator(path).slo(MODEL, VERSION) == {"accuracy": 0.9}


# --- metrics against scikit-learn ---------------------------------------------------------


def test_realized_classification_matches_sklearn_with_sample_weights() -> None:
    rng = np.random.default_rng(11)
    n_calls = 120
    reader = InMemoryMetricReader()
    agg = DriftAggregator(":memory:", meter_provider=MeterProvider(metric_readers=[reader]))
    spans, labels = [], []
    y_true, y_pred, p_pos, weights = [], [], [], []
    for i in range(n_calls):
        size = int(rng.integers(1, 4))
        rate = [1.0, 0.5, 0.25][i % 3]
        positive = rng.random(size)
        pred = (positive >= 0.5).astype(float)
        top = np.maximum(positive, 1 - positive)
        truth = (rng.random(size) < positive).astype(float)
        spans.append(_prediction(f"c{i}", pred.tolist(), scores=top.tolist(), rate=rate))
        if i % 5 == 4:
            continue  # unlabelled calls lower the coverage
        labels.append(_label(f"c{i}", truth.tolist()))
        y_true += truth.tolist()
        y_pred += pred.tolist()
        p_pos += positive.tolist()
        weights += [1 / rate] * size
    agg.ingest(_bytes(spans))
    agg.ingest(_bytes(labels))
    agg.set_slo(MODEL, VERSION, {"accuracy": 0.99, "log_loss": 5.0})
    perf = agg.performance(MODEL, VERSION)
    realized = perf["realized"]
    w = np.asarray(weights)
    assert realized["accuracy"] == pytest.approx(
        skm.accuracy_score(y_true, y_pred, sample_weight=w)
    )
    for name, fn in (
        ("precision_macro", skm.precision_score),
        ("recall_macro", skm.recall_score),
        ("f1_macro", skm.f1_score),
    ):
        assert realized[name] == pytest.approx(fn(y_true, y_pred, average="macro", sample_weight=w))
    assert realized["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, p_pos, sample_weight=w))
    assert realized["log_loss"] == pytest.approx(skm.log_loss(y_true, p_pos, sample_weight=w))
    np.testing.assert_allclose(
        perf["confusion_matrix"], skm.confusion_matrix(y_true, y_pred, sample_weight=w)
    )
    total_weight = sum(
        len(s[1][semconv.PREDICTION_VALUE]) / s[1][semconv.SAMPLE_RATE] for s in spans
    )
    assert perf["label_coverage"] == pytest.approx(w.sum() / total_weight)
    assert perf["slo"]["accuracy"]["breached"] is True
    assert perf["slo"]["log_loss"]["breached"] is False
    assert perf["estimated"]["kind"] == "estimated"
    assert perf["estimated"]["calibrated"] is False  # no labelled reference sample
    # the gauges: realized, estimated (prefixed) and the coverage; the join counters
    points = {}
    for name, metric_points in data_points(reader).items():
        for point in metric_points:
            attrs = dict(point.attributes)
            key = attrs.get(semconv.PERFORMANCE_METRIC) or attrs.get(semconv.JOIN_OUTCOME)
            points[(name, key)] = point.value
    assert points[(semconv.METRIC_PERFORMANCE, "accuracy")] == pytest.approx(realized["accuracy"])
    assert points[(semconv.METRIC_PERFORMANCE, "estimated_accuracy")] == pytest.approx(
        perf["estimated"]["metrics"]["accuracy"]
    )
    assert points[(semconv.METRIC_PERFORMANCE, "label_coverage")] == pytest.approx(
        perf["label_coverage"]
    )
    assert points[(semconv.METRIC_JOIN_LABELS, "matched")] == len(y_true)
    agg.close()


def test_realized_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    agg = DriftAggregator(":memory:")
    agg.set_slo(MODEL, VERSION, {"rmse": 0.1}, task="regression")
    truth = rng.normal(10.0, 3.0, 80)
    pred = truth + rng.normal(0.0, 1.0, 80)
    spans = [_prediction(f"r{i}", [pred[i]], rate=0.5 if i % 2 else 1.0) for i in range(80)]
    agg.ingest(_bytes(spans))
    agg.ingest_labels(MODEL, VERSION, [LabelEntry(f"r{i}", 0, float(truth[i])) for i in range(80)])
    perf = agg.performance(MODEL, VERSION)
    w = np.array([2.0 if i % 2 else 1.0 for i in range(80)])
    assert perf["task"] == "regression"
    assert perf["realized"]["mae"] == pytest.approx(
        skm.mean_absolute_error(truth, pred, sample_weight=w)
    )
    assert perf["realized"]["rmse"] == pytest.approx(
        np.sqrt(skm.mean_squared_error(truth, pred, sample_weight=w))
    )
    assert perf["realized"]["r2"] == pytest.approx(skm.r2_score(truth, pred, sample_weight=w))
    assert perf["realized"]["mape"] == pytest.approx(
        skm.mean_absolute_percentage_error(truth, pred, sample_weight=w)
    )
    assert perf["slo"]["rmse"]["breached"] is True
    assert perf["estimated"] is None
    agg.close()


def test_cbpe_estimate_with_a_calibrated_reference_tracks_realized_accuracy() -> None:
    """Covariate shift, same concept: the calibrated estimate is close to the truth."""
    rng = np.random.default_rng(21)

    def batch(n: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(shift, 1.0, n)
        positive = 1 / (1 + np.exp(-2.0 * x))  # the true P(y=1 | x)
        truth = (rng.random(n) < positive).astype(float)
        raw = np.clip(positive**0.7, 0, 1)  # an over-confident, uncalibrated model score
        pred = (raw >= 0.5).astype(float)
        top = np.where(pred == 1, raw, 1 - raw)
        return x, truth, pred, top

    x, truth, pred, top = batch(4000, 0.0)
    reference = Reference.from_data(
        {"x": x}, predictions=pred, targets=truth, scores=top, categorical={"__prediction__": True}
    )
    reference = Reference.from_json(reference.to_json())
    assert reference.labelled is not None and len(reference.labelled) == 4000
    agg = DriftAggregator(":memory:")
    agg.set_reference(MODEL, VERSION, reference)
    x, truth, pred, top = batch(1500, 0.8)  # production inputs moved
    spans = [_prediction(f"q{i}", [pred[i]], scores=[top[i]]) for i in range(1500)]
    agg.ingest(_bytes(spans))
    agg.ingest_labels(MODEL, VERSION, [LabelEntry(f"q{i}", 0, truth[i]) for i in range(1500)])
    perf = agg.performance(MODEL, VERSION)
    estimated = perf["estimated"]
    assert estimated["calibrated"] is True
    realized = perf["realized"]["accuracy"]
    assert realized == pytest.approx(float(np.mean(truth == pred)))
    assert abs(estimated["metrics"]["accuracy"] - realized) < 0.03
    compared = estimated["compared_with_realized"]["accuracy"]
    assert compared["error"] == pytest.approx(estimated["metrics"]["accuracy"] - realized)
    history = agg.performance_history(MODEL, VERSION)
    assert history["metric"] == "accuracy"
    assert history["points"][-1]["realized"] == pytest.approx(realized)
    agg.close()


def test_replicas_merge_their_joins() -> None:
    one, two, both = (DriftAggregator(":memory:") for _ in range(3))
    preds = [_prediction(f"m{i}", [float(i % 2)]) for i in range(10)]
    labels = [_label(f"m{i}", float((i // 2) % 2)) for i in range(10)]
    one.ingest(_bytes(preds[:5]))
    one.ingest(_bytes(labels[5:]))  # pending on replica one, their predictions on two
    two.ingest(_bytes(preds[5:]))
    two.ingest(_bytes(labels[:3]))  # pending on two, predictions on one
    both.ingest(_bytes(preds))
    both.ingest(_bytes(labels[:3] + labels[5:]))
    one.merge(two)
    merged = one.performance(MODEL, VERSION)
    single = both.performance(MODEL, VERSION)
    assert merged["realized"] == single["realized"]
    assert merged["labels"]["matched"] == single["labels"]["matched"] == 8
    assert merged["labels"]["pending"] == 0
    for agg in (one, two, both):
        agg.close()


def test_performance_json_is_strict_json_and_unknown_models_raise() -> None:
    agg = DriftAggregator(":memory:")
    with pytest.raises(KeyError):
        agg.performance("nope", "1")
    agg.ingest(_bytes([_prediction("a", [1.0])]))
    perf = agg.performance(MODEL, VERSION)  # no label yet
    assert perf["realized"] == {} and perf["label_coverage"] == 0.0
    json.dumps(perf, allow_nan=False)
    with pytest.raises(ValueError, match="unknown performance metric"):
        agg.set_slo(MODEL, VERSION, {"accuracyy": 0.9})
    agg.close()


def _expected_calls(
    ids: list[str],
    ts: list[float],
    traces: list[str],
    weights: list[float],
    rows: list[int],
    values: list[Any],
    scores: list[float] | None,
) -> tuple[list[list[Any]], list[str]]:
    """The join's per-call entries by the definition, one row at a time: a call is a
    run of rows with the same id, time and trace; its first present value per batch
    row is kept; calls with nothing kept are 'not captured'."""
    entries: list[list[Any]] = []
    uncaptured: list[str] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i < len(ids) and (ids[i], ts[i], traces[i]) == (ids[start], ts[start], traces[start]):
            continue
        if ids[start]:
            seen: dict[int, tuple[Any, float]] = {}
            for j in range(start, i):
                value = values[j]
                if isinstance(value, float) and value != value:
                    value = None
                elif isinstance(value, (bool, int, float)):
                    value = float(value)
                elif value == "" or not isinstance(value, str):
                    value = None
                if value is not None and rows[j] not in seen:
                    seen[rows[j]] = (value, scores[j] if scores is not None else float("nan"))
            if seen:
                kept = list(seen.items())
                kept_rows = [r for r, _ in kept]
                kept_values = [v for _, (v, _) in kept]
                kept_scores = [s for _, (_, s) in kept]
                head = [ids[start], ts[start], weights[start], traces[start]]
                entries.append([*head, kept_rows, kept_values, kept_scores, [None] * len(kept)])
            elif ids[start] not in uncaptured:
                uncaptured.append(ids[start])
        start = i
    return entries, uncaptured


@pytest.mark.parametrize("kind", ["float", "int", "bool", "object"])
def test_add_predictions_matches_the_row_by_row_definition(kind: str) -> None:
    from modeltrace.drift.extract import PREDICTION_COLUMN, SCORE_COLUMN, ModelRows

    rng = np.random.default_rng({"float": 1, "int": 2, "bool": 3, "object": 4}[kind])
    n = 600
    call = np.sort(rng.integers(0, 150, n))
    ids = [f"p{c}" if c % 7 else "" for c in call]  # some calls without an id
    ts = [1000.0 + c // 3 for c in call]  # runs of one id split by time
    traces = [f"{c % 5:032x}" for c in call]
    weights = [1.0 + (c % 4) for c in call]
    rows = rng.integers(0, 6, n).tolist()  # repeated batch rows within calls
    if kind == "float":
        column = rng.normal(size=n)
        column[rng.random(n) < 0.3] = np.nan
        values: list[Any] = column.tolist()
    elif kind == "int":
        column = rng.integers(-3, 3, n)
        values = column.tolist()
    elif kind == "bool":
        column = rng.random(n) < 0.5
        values = column.tolist()
    else:
        pool: list[Any] = ["a", "b", "", None, 2, 3.5, float("nan"), True, ["x"]]
        values = [pool[k] for k in rng.integers(0, len(pool), n)]
        column = np.empty(n, dtype=object)
        column[:] = values
    scores = rng.random(n).tolist()
    batch = ModelRows(
        model=MODEL,
        version=VERSION,
        columns={PREDICTION_COLUMN: column, SCORE_COLUMN: np.asarray(scores)},
        weights=np.asarray(weights),
        trace_ids=np.asarray(traces, dtype=object),
        timestamps=np.asarray(ts),
        spans=int(call.max()) + 1,
        prediction_ids=np.asarray(ids, dtype=object),
        row_indices=np.asarray(rows, dtype=np.int64),
    )
    buffer = JoinBuffer(max_rows=10**6)
    buffer.add_predictions(batch, now=2000.0)
    entries, uncaptured = _expected_calls(ids, ts, traces, weights, rows, values, scores)
    state = json.loads(json.dumps(buffer.to_state()))
    expected_ids = [e[0] for e in entries]
    # A repeated id (one call split by time) keeps its first entry and counts a duplicate.
    first_entries = [e for i, e in enumerate(entries) if e[0] not in expected_ids[:i]]
    assert state["predictions"] == json.loads(json.dumps(first_entries))
    assert buffer.counters.predictions == sum(len(e[4]) for e in first_entries)
    assert buffer.counters.duplicate_predictions == len(entries) - len(first_entries)
    known = {pid for pid, _, _ in state["known"]}
    assert known == {pid for pid in uncaptured if pid not in expected_ids}
    assert len(entries) > 20 and buffer.counters.predictions > 100
