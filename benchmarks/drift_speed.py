"""Drift aggregator speed: ingestion rate, evaluate() latency, memory growth.

* ingestion: serialized OTLP ``ExportTraceServiceRequest``s (built with the
  real protobuf classes, ``--rows`` rows x ``--features`` numeric features per
  prediction span, ``--batch`` spans per request) through ``DriftAggregator.ingest``
  into a window; reports spans/s on one core (the loop runs in this process),
  and the rate of the extraction alone (``extract_otlp``);
* evaluate: median and p95 latency of ``evaluate()`` for a model with
  ``--eval-features`` features and a filled window (this includes writing the
  report to the store's history), per-feature drift only (multivariate methods
  off), with the default multivariate entries carried over between
  recomputations (the default ``multivariate_interval_seconds``), and recomputed
  on every evaluation (interval 0);
* memory: resident set size after ``--small`` spans and after ``--large`` spans;
  state is bounded, so the two should be close.

Targets from issue 4: >= 50k spans/s per core, evaluate < 50 ms for 50
features, flat memory. Run: ``python benchmarks/drift_speed.py`` (defaults
take about a minute; ``--large 1000000`` for the full memory check).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from typing import Any

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from modeltrace import semconv
from modeltrace.drift import DriftAggregator, Reference
from modeltrace.drift.extract import extract_otlp
from modeltrace.drift.joint import MultivariateSettings

END_NS = 1_700_000_000_000_000_000


def make_requests(
    rng: np.random.Generator, n_requests: int, batch: int, rows: int, features: int
) -> list[bytes]:
    """Distinct serialized requests of prediction spans in the documented layout."""
    out = []
    for _ in range(n_requests):
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for _ in range(batch):
            span = scope.spans.add()
            span.name = "predict bench"
            span.trace_id = rng.bytes(16)
            span.span_id = rng.bytes(8)
            span.start_time_unix_nano = END_NS - 1_000_000
            span.end_time_unix_nano = END_NS
            attrs = span.attributes
            attrs.add(key=semconv.MODEL_NAME, value=AnyValue(string_value="bench"))
            attrs.add(key=semconv.MODEL_VERSION, value=AnyValue(string_value="1"))
            attrs.add(key=semconv.SAMPLE_RATE, value=AnyValue(double_value=1.0))
            indices = attrs.add(key=semconv.SAMPLE_INDICES).value.array_value.values
            indices.extend([AnyValue(int_value=i) for i in range(rows)])
            values = rng.normal(size=(features, rows))
            for f in range(features):
                kv = attrs.add(key=f"{semconv.FEATURE_PREFIX}f{f}")
                kv.value.array_value.values.extend([AnyValue(double_value=v) for v in values[f]])
        out.append(request.SerializeToString())
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def feed(agg: DriftAggregator, requests: list[bytes], spans: int, batch: int) -> float:
    """Ingest until ``spans`` spans went in; return the seconds spent in ingest()."""
    spent = 0.0
    done = 0
    i = 0
    while done < spans:
        payload = requests[i % len(requests)]
        start = time.perf_counter()
        result = agg.ingest(payload)
        spent += time.perf_counter() - start
        if result.rejected:
            raise RuntimeError(result.reason)
        done += batch
        i += 1
    return spent


def bench_ingest(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    reference = Reference.from_data(
        rng.normal(size=(5000, args.features)),
        feature_names=[f"f{i}" for i in range(args.features)],
    )
    requests = make_requests(rng, 20, args.batch, args.rows, args.features)
    agg = DriftAggregator(":memory:")
    agg.set_reference("bench", "1", reference)
    feed(agg, requests, args.batch * 5, args.batch)  # warm up
    seconds = feed(agg, requests, args.spans, args.batch)
    agg.close()
    start = time.perf_counter()
    for i in range(max(1, args.spans // args.batch)):
        extract_otlp(requests[i % len(requests)])
    extract_seconds = time.perf_counter() - start
    return {
        "spans": args.spans,
        "features": args.features,
        "rows_per_span": args.rows,
        "seconds": seconds,
        "spans_per_second": args.spans / seconds,
        "extract_spans_per_second": max(1, args.spans // args.batch) * args.batch / extract_seconds,
        "target_spans_per_second": 50_000,
    }


def bench_evaluate(
    args: argparse.Namespace,
    rng: np.random.Generator,
    multivariate: bool,
    interval: float = 30.0,
    runs: int | None = None,
) -> dict[str, Any]:
    n = args.eval_features
    names = [f"f{i}" for i in range(n)]
    reference = Reference.from_data(rng.normal(size=(5000, n)), feature_names=names)
    settings = None if multivariate else MultivariateSettings(methods=())
    agg = DriftAggregator(":memory:", multivariate=settings, multivariate_interval_seconds=interval)
    agg.set_reference("bench", "1", reference)
    requests = make_requests(rng, 4, 200, args.rows, n)
    feed(agg, requests, 4000, 200)
    agg.evaluate("bench", "1")
    times = []
    for _ in range(runs if runs is not None else args.eval_runs):
        start = time.perf_counter()
        report = agg.evaluate("bench", "1")
        times.append(time.perf_counter() - start)
    agg.close()
    times.sort()
    return {
        "features": len(report.features),
        "window_rows": report.n_samples,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000,
        "target_ms": 50,
    }


def bench_memory(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    reference = Reference.from_data(
        rng.normal(size=(5000, args.features)),
        feature_names=[f"f{i}" for i in range(args.features)],
    )
    requests = make_requests(rng, 20, args.batch, args.rows, args.features)
    agg = DriftAggregator(":memory:")
    agg.set_reference("bench", "1", reference)
    feed(agg, requests, args.small, args.batch)
    gc.collect()
    small = rss_bytes()
    feed(agg, requests, args.large - args.small, args.batch)
    gc.collect()
    large = rss_bytes()
    agg.close()
    return {
        "spans_small": args.small,
        "spans_large": args.large,
        "rss_small_mib": small / 2**20,
        "rss_large_mib": large / 2**20,
        "growth_mib": (large - small) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=50_000, help="spans timed for ingestion")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500, help="spans per OTLP request")
    parser.add_argument("--eval-features", type=int, default=50)
    parser.add_argument("--eval-runs", type=int, default=30)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {
        "ingest": bench_ingest(args, rng),
        "evaluate": bench_evaluate(args, rng, multivariate=False),
        "evaluate_multivariate": bench_evaluate(args, rng, multivariate=True),
        "evaluate_multivariate_fresh": bench_evaluate(
            args, rng, multivariate=True, interval=0.0, runs=min(args.eval_runs, 5)
        ),
        "memory": bench_memory(args, rng),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    ingest, evaluate, memory = results["ingest"], results["evaluate"], results["memory"]
    print(
        f"ingest:   {ingest['spans_per_second']:,.0f} spans/s "
        f"({ingest['features']} features x {ingest['rows_per_span']} rows; target >= 50,000)"
    )
    print(f"extract:  {ingest['extract_spans_per_second']:,.0f} spans/s (extraction alone)")
    print(
        f"evaluate: median {evaluate['median_ms']:.1f} ms, p95 {evaluate['p95_ms']:.1f} ms "
        f"({evaluate['features']} features, {evaluate['window_rows']} rows, per-feature drift; "
        "target < 50 ms)"
    )
    multi = results["evaluate_multivariate"]
    print(
        f"          median {multi['median_ms']:.1f} ms, p95 {multi['p95_ms']:.1f} ms "
        "with the default multivariate entries (carried over within the 30 s interval)"
    )
    fresh = results["evaluate_multivariate_fresh"]
    print(
        f"          median {fresh['median_ms']:.1f} ms, p95 {fresh['p95_ms']:.1f} ms "
        "recomputing them every time (multivariate_interval_seconds=0)"
    )
    print(
        f"memory:   {memory['rss_small_mib']:.1f} MiB after {memory['spans_small']:,} spans, "
        f"{memory['rss_large_mib']:.1f} MiB after {memory['spans_large']:,} "
        f"(growth {memory['growth_mib']:+.1f} MiB)"
    )


if __name__ == "__main__":
    main()
