"""Call statistics of the aggregator (errors by type, latency per pane) and their routes.

Quantiles are checked against numpy's inverted-CDF quantile of the raw durations
(the bucket holding it) and against Prometheus' interpolation formula on hand
cases; counts against ``collections.Counter`` and boolean masks; the OTLP path
against the SDK path on the same spans (the OTLP request is built by the
exporter's own encoder).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import modeltrace
from modeltrace import runtime, semconv
from modeltrace.drift import DriftAggregator, Reference
from modeltrace.drift.call_stats import (
    BUCKET_BOUNDS,
    MAX_ERROR_TYPES,
    MAX_EXAMPLES,
    OTHER_ERROR_TYPE,
    CallRecords,
    CallStats,
    histogram_quantile,
)

NOW = 1_800_000_000.0


def _records(
    ends: list[float], durations: list[float], errors: list[str], ids: list[str] | None = None
) -> CallRecords:
    ids = ids if ids is not None else [f"{i:032x}" for i in range(len(ends))]
    return CallRecords.from_lists(ends, durations, errors, ids)


# --- histogram_quantile ------------------------------------------------------


def test_quantile_interpolates_like_prometheus() -> None:
    bounds = (1.0, 2.0, 4.0)
    # 10 observations: 2 in (0,1], 4 in (1,2], 4 in (2,4].
    counts = [2, 4, 4, 0]
    # rank 5 -> bucket (1,2], 3 of its 4: 1 + 1 * 3/4
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(1.75)
    # rank 1 -> first bucket from 0: 0 + 1 * 1/2
    assert histogram_quantile(0.1, bounds, counts) == pytest.approx(0.5)
    # rank 9 -> (2,4], 3 of 4: 2 + 2 * 3/4
    assert histogram_quantile(0.9, bounds, counts) == pytest.approx(3.5)
    # A rank in +Inf gives the highest finite bound.
    assert histogram_quantile(0.99, bounds, [0, 0, 1, 5]) == 4.0
    assert histogram_quantile(0.5, bounds, [0, 0, 0, 0]) is None
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, bounds, counts)
    with pytest.raises(ValueError, match="one entry per bound"):
        histogram_quantile(0.5, bounds, [1, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantiles_fall_in_the_bucket_of_the_exact_quantile(seed: int) -> None:
    rng = np.random.default_rng(seed)
    durations = rng.lognormal(mean=-4.0, sigma=1.2, size=2000)
    stats = CallStats(60.0)
    stats.add(_records([NOW - 5.0] * durations.size, list(durations), [""] * durations.size))
    current = stats.compare(3600.0, NOW)["current"]
    edges = (0.0, *BUCKET_BOUNDS, math.inf)
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(durations, q, method="inverted_cdf"))
        estimate = current["latency_seconds"][f"p{round(q * 100)}"]
        bucket = next(i for i in range(len(edges) - 1) if edges[i] < exact <= edges[i + 1])
        assert edges[bucket] <= estimate <= edges[bucket + 1], (q, exact, estimate)
    assert current["latency_seconds"]["mean"] == pytest.approx(durations.mean())
    # Bucket counts: "le" buckets, counted independently with masks.
    expected = [
        int(np.sum((durations > edges[i]) & (durations <= edges[i + 1])))
        for i in range(len(edges) - 1)
    ]
    assert current["latency_buckets"]["counts"] == expected
    assert current["latency_buckets"]["le"][-1] == "+Inf"


# --- CallStats ---------------------------------------------------------------


def test_errors_by_type_examples_and_slowest() -> None:
    rng = np.random.default_rng(7)
    types = rng.choice(["", "", "", "ValueError", "TimeoutError", "KeyError"], size=500)
    durations = rng.exponential(0.05, size=500)
    ids = [f"{i:032x}" for i in range(500)]
    stats = CallStats(60.0)
    stats.add(_records([NOW - 1.0] * 500, list(durations), [str(t) for t in types], ids))
    current = stats.compare(3600.0, NOW)["current"]
    counts = Counter(str(t) for t in types if t)
    assert current["calls"] == 500
    assert current["errors"] == sum(counts.values())
    assert current["error_ratio"] == pytest.approx(sum(counts.values()) / 500)
    assert current["errors_by_type"] == dict(counts)
    assert list(current["errors_by_type"]) == [t for t, _ in counts.most_common()]
    for name, examples in current["examples"]["errors"].items():
        assert 1 <= len(examples) <= MAX_EXAMPLES
        assert all(str(types[int(t, 16)]) == name for t in examples)
    slowest = current["examples"]["slowest"]
    top = np.argsort(-durations)[:MAX_EXAMPLES]
    assert [s["trace_id"] for s in slowest] == [ids[i] for i in top]
    assert [s["seconds"] for s in slowest] == pytest.approx(durations[top].tolist())


def test_error_types_are_capped_per_pane() -> None:
    n = MAX_ERROR_TYPES + 5
    stats = CallStats(60.0)
    stats.add(_records([NOW] * n, [0.01] * n, [f"Error{i}" for i in range(n)]))
    errors = stats.compare(60.0, NOW)["current"]["errors_by_type"]
    assert len(errors) == MAX_ERROR_TYPES + 1
    assert errors[OTHER_ERROR_TYPE] == 5
    assert sum(errors.values()) == n


def test_current_and_previous_periods() -> None:
    stats = CallStats(60.0)
    # Previous hour: 100 calls, 1 error, 20 ms. Last hour: 100 calls, 10 errors, 400 ms.
    stats.add(_records([NOW - 5400.0] * 100, [0.02] * 100, ["ValueError"] + [""] * 99))
    stats.add(_records([NOW - 1800.0] * 100, [0.4] * 100, ["ValueError"] * 10 + [""] * 90))
    stats.add(_records([NOW - 9000.0] * 50, [0.02] * 50, [""] * 50))  # older: in neither
    out = stats.compare(3600.0, NOW)
    current, previous = out["current"], out["previous"]
    assert (current["calls"], current["errors"]) == (100, 10)
    assert (previous["calls"], previous["errors"]) == (100, 1)
    assert previous["complete"] is True
    assert previous["end"] == current["start"]
    assert current["start"] <= NOW - 3600.0 + 60.0
    # 0.4 s lies in (0.25, 0.5]; 0.02 s in (0.01, 0.025].
    assert 0.25 < current["latency_seconds"]["p99"] <= 0.5
    assert 0.01 < previous["latency_seconds"]["p99"] <= 0.025
    # Not enough history: the previous period is marked incomplete.
    young = CallStats(60.0)
    young.add(_records([NOW - 10.0], [0.01], [""]))
    assert young.compare(3600.0, NOW)["previous"]["complete"] is False
    with pytest.raises(ValueError, match="since"):
        stats.compare(0.0, NOW)


def test_panes_are_bounded_and_merge_exactly() -> None:
    rng = np.random.default_rng(3)
    ends = list(NOW - rng.uniform(0, 7200, size=400))
    durations = list(rng.exponential(0.1, size=400))
    errors = [str(e) for e in rng.choice(["", "", "OSError", "ValueError"], size=400)]
    whole = CallStats(60.0)
    whole.add(_records(ends, durations, errors))
    left = CallStats(60.0)
    left.add(_records(ends[:150], durations[:150], errors[:150]))
    right_ids = [f"{i:032x}" for i in range(150, 400)]
    right = CallStats(60.0)
    right.add(_records(ends[150:], durations[150:], errors[150:], right_ids))
    left.merge(CallStats.from_dict(right.to_dict()))
    a, b = whole.compare(3600.0, NOW), left.compare(3600.0, NOW)
    for period in ("current", "previous"):
        for field in ("calls", "errors", "errors_by_type", "latency_buckets"):
            assert a[period][field] == b[period][field]
        assert a[period]["latency_seconds"]["mean"] == pytest.approx(
            b[period]["latency_seconds"]["mean"]
        )
        assert a[period]["examples"]["slowest"] == b[period]["examples"]["slowest"]
    small = CallStats(60.0, max_panes=10)
    small.add(_records(ends, durations, errors))
    assert len(small.panes) == 10
    assert min(small.panes) == sorted(whole.panes)[-10]
    with pytest.raises(ValueError, match="panes of"):
        whole.merge(CallStats(30.0))
    with pytest.raises(ValueError, match="pane_seconds"):
        CallStats(0.0)
    with pytest.raises(ValueError, match="max_panes"):
        CallStats(60.0, max_panes=0)


# --- spans in: SDK and OTLP paths --------------------------------------------


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = modeltrace.configure(tracer_provider=provider, metric_readers=[], set_global=False)
    try:

        @modeltrace.monitor(model="churn", version="3", feature_names=["a", "b"])
        def predict(row: list[float]) -> float:
            if row[0] < 0:
                raise ValueError("negative")
            if row[0] > 100:
                raise KeyError("missing")
            time.sleep(row[0] / 1000.0)
            return row[0] + row[1]

        for value in [1.0, 2.0, -1.0, 3.0, 200.0, -2.0, 5.0, 0.0]:
            with contextlib.suppress(ValueError, KeyError):
                predict([value, 1.0])
        # A failed prediction span without error.type (another instrumentation).
        tracer = provider.get_tracer("other")
        with tracer.start_as_current_span(
            semconv.PREDICT_SPAN_PREFIX + "churn",
            attributes={semconv.MODEL_NAME: "churn", semconv.MODEL_VERSION: "3"},
        ) as span:
            span.set_status(Status(StatusCode.ERROR, "boom"))
    finally:
        handle.shutdown()
        runtime.reset()
    return [s for s in exporter.get_finished_spans() if s.name.startswith("predict ")]


def _check(summary: dict, spans: list[ReadableSpan]) -> None:
    current = summary["current"]
    assert current["calls"] == len(spans) == 9
    assert current["errors_by_type"] == {"ValueError": 2, "KeyError": 1, OTHER_ERROR_TYPE: 1}
    durations = [(s.end_time - s.start_time) / 1e9 for s in spans]
    assert current["latency_seconds"]["mean"] == pytest.approx(np.mean(durations), rel=1e-9)
    by_trace = {f"{s.context.trace_id:032x}": s for s in spans}
    for trace_id in current["examples"]["errors"]["ValueError"]:
        assert by_trace[trace_id].attributes[semconv.ERROR_TYPE] == "ValueError"
    slowest = max(spans, key=lambda s: s.end_time - s.start_time)
    assert current["examples"]["slowest"][0]["trace_id"] == f"{slowest.context.trace_id:032x}"


def test_sdk_and_otlp_spans_give_the_same_statistics() -> None:
    spans = _spans()
    now = max(s.end_time for s in spans) / 1e9 + 1.0
    with DriftAggregator(":memory:") as from_sdk, DriftAggregator(":memory:") as from_otlp:
        from_sdk.ingest(spans)
        from_otlp.ingest(encode_spans(spans).SerializeToString())
        a = from_sdk.call_summary("churn", "3", 3600.0, now=now)
        b = from_otlp.call_summary("churn", "3", 3600.0, now=now)
        _check(a, spans)
        assert a == b
        with pytest.raises(KeyError, match="unknown model"):
            from_sdk.call_summary("nope", "1", 60.0)


def test_call_statistics_survive_checkpoint_restart_and_replay(tmp_path: Path) -> None:
    spans = _spans()
    now = max(s.end_time for s in spans) / 1e9 + 1.0
    payload = encode_spans(spans).SerializeToString()
    store = tmp_path / "store.db"
    agg = DriftAggregator(store)
    agg.ingest_durable([payload])
    expected = agg.call_summary("churn", "3", 3600.0, now=now)
    agg.close()  # checkpoint: the statistics are in the stored counters
    reopened = DriftAggregator(store, checkpoint_seconds=3600.0)
    assert reopened.call_summary("churn", "3", 3600.0, now=now) == expected
    # The process dies before a checkpoint: the request is replayed from the inbox.
    reopened.ingest_durable([payload])
    reopened.store.close()
    with DriftAggregator(store) as replayed:
        doubled = replayed.call_summary("churn", "3", 3600.0, now=now)["current"]
        assert doubled["calls"] == 2 * expected["current"]["calls"]
        assert doubled["errors"] == 2 * expected["current"]["errors"]


def test_replicas_merge_call_statistics() -> None:
    spans = _spans()
    now = max(s.end_time for s in spans) / 1e9 + 1.0
    with DriftAggregator(":memory:") as one, DriftAggregator(":memory:") as two:
        one.ingest(spans[:4])
        two.ingest(spans[4:])
        one.merge(two)
        _check(one.call_summary("churn", "3", 3600.0, now=now), spans)


# --- routes -------------------------------------------------------------------


def test_routes_answer_stats_history_and_errors() -> None:
    from modeltrace.drift.service.app import build_app
    from modeltrace.drift.service.rca_routes import rca_routes

    spans = _spans()
    agg = DriftAggregator(":memory:")
    rng = np.random.default_rng(0)
    agg.set_reference("churn", "3", Reference.from_data(rng.normal(size=(300, 2)), ["a", "b"]))
    agg.ingest(spans)
    agg.evaluate("churn", "3")

    class _State:
        backend = agg
        unknown_model_errors = (KeyError,)

    app = build_app(_State(), extra_routes=rca_routes())  # type: ignore[arg-type]
    base = "http://modeltrace/api/v1/models"

    async def requests() -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return {
                "stats": await client.get(f"{base}/churn/versions/3/spans/stats?since=2h"),
                "history": await client.get(f"{base}/churn/versions/3/drift/history?limit=5"),
                "bad_since": await client.get(f"{base}/churn/versions/3/spans/stats?since=soon"),
                "bad_limit": await client.get(f"{base}/churn/versions/3/drift/history?limit=0"),
                "unknown_stats": await client.get(f"{base}/nope/versions/1/spans/stats"),
                "unknown_history": await client.get(f"{base}/nope/versions/1/drift/history"),
            }

    answers = asyncio.run(requests())
    agg.close()
    assert answers["stats"].status_code == 200, answers["stats"].text
    body = answers["stats"].json()
    assert body["since_seconds"] == 7200.0
    assert body["current"]["calls"] == 9
    assert answers["history"].status_code == 200
    (report,) = answers["history"].json()["reports"]
    assert {f["name"] for f in report["features"]} >= {"a", "b"}
    assert set(report["features"][0]) == {
        "name", "method", "score", "threshold", "p_value", "drifted", "missing_ratio",
    }  # fmt: skip
    for name, parameter in (("bad_since", "since"), ("bad_limit", "limit")):
        assert answers[name].status_code == 400
        assert parameter in answers[name].json()["error"]
    for name in ("unknown_stats", "unknown_history"):
        assert answers[name].status_code == 404
        assert "unknown model" in answers[name].json()["error"]
