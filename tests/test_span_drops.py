"""Span loss under load and with a dead endpoint: no loss by default, every drop counted.

The load is a fitted scikit-learn model predicting single rows inside
request-like spans, exported over OTLP/HTTP to a receiver in a child process
(tests/span_load.py). The SDK's default ``BatchSpanProcessor`` drops spans at
this load only on some runs (GIL contention decides: see
benchmarks/span_drops.py), so these tests check modeltrace's side exactly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import modeltrace
from modeltrace import semconv
from modeltrace.drift import DriftAggregator, Reference
from modeltrace.drift.processor import DriftSpanProcessor
from modeltrace.export import (
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE,
    DropCountingSpanProcessor,
)
from sdk_harness import data_points
from span_load import ReceiverProcess, fitted_model, run_load


@pytest.fixture(scope="module")
def receiver() -> Iterator[ReceiverProcess]:
    with ReceiverProcess() as process:
        yield process


def test_default_processor_loses_no_span_under_a_real_model_load(receiver) -> None:
    result = run_load("modeltrace", receiver.endpoint, seconds=2.5)
    assert result.produced > 500, result  # a real load, not a handful of spans
    assert result.exported == result.produced, result
    assert result.counted_drops == 0
    # It kept up while the model ran: the queue stayed far from its cap, and all
    # but the spans of the last batch / schedule delay left during the load.
    assert result.max_queue is not None
    assert result.max_queue <= DEFAULT_MAX_QUEUE_SIZE // 2, result
    # (bounds generous for a shared, noisy machine: a batch in flight, one waiting,
    # and two seconds of production behind them)
    assert result.produced - result.exported_during_load <= (
        3 * DEFAULT_MAX_EXPORT_BATCH_SIZE + result.rate * 2.0
    ), result


def test_drops_counted_equal_spans_lost_under_the_same_load(receiver) -> None:
    """A queue too small for the load: the self-metric counts exactly the spans never delivered."""
    result = run_load(
        "modeltrace",
        receiver.endpoint,
        seconds=1.5,
        processor_settings={"max_queue_size": 16, "max_export_batch_size": 16},
    )
    assert result.produced > 500, result
    assert result.dropped > 0, result
    assert result.counted_drops == result.dropped, result


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@modeltrace.monitor(model="dead", version="1", capture_features=False)
def _predict(x: float) -> float:
    return x * 2.0


def test_dead_endpoint_keeps_memory_bounded_and_counts_every_drop() -> None:
    reader = InMemoryMetricReader()
    cap = 128
    handle = modeltrace.configure(
        endpoint=f"http://127.0.0.1:{_closed_port()}",
        protocol="http/protobuf",
        max_queue_size=cap,
        max_export_batch_size=32,
        schedule_delay_millis=20,
        export_timeout_millis=2000,
        metric_readers=[reader],
        set_global=False,
    )
    processor = handle.span_processor
    assert processor is not None
    try:
        deepest = 0
        for i in range(600):  # warm-up: caches, first exports, the "logged once" records
            _predict(float(i))
        # The exporter logs every failed export; pytest keeps those records in memory,
        # which tracemalloc would count against the processor.
        exporter_logger = logging.getLogger("opentelemetry.exporter")
        level = exporter_logger.level
        exporter_logger.setLevel(logging.CRITICAL)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(3000):
                _predict(float(i))
                if i % 50 == 0:
                    deepest = max(deepest, processor.queue_length())
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            exporter_logger.setLevel(level)
        assert deepest <= cap
        # 3000 retained spans would take several MB; the capped queue keeps it flat.
        assert grown < 2_000_000, grown
    finally:
        started = time.perf_counter()
        handle.shutdown(1500)
        assert time.perf_counter() - started < 3.0
    points = data_points(reader).get(semconv.METRIC_SDK_SPANS_DROPPED, [])
    # Nothing reached the dead endpoint: all 3600 spans are counted as lost.
    assert sum(p.value for p in points) == 3600


class _BlockedExporter(SpanExporter):
    """An endpoint that never answers: export waits (GIL released) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        self.entered.set()
        self.release.wait(30)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_a_worker_waiting_on_the_endpoint_gets_no_yields_from_the_caller() -> None:
    """Yields are for a worker starved of the GIL, never a wait on a slow or dead backend."""
    exporter = _BlockedExporter()
    processor = DropCountingSpanProcessor(
        exporter, max_queue_size=4096, max_export_batch_size=256, schedule_delay_millis=10
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("blocked")
    try:
        for _ in range(300):  # a batch: the worker takes it and waits on the endpoint
            tracer.start_span("s").end()
        assert exporter.entered.wait(10)
        before = processor._worker_yield.yields
        started = time.monotonic()
        for _ in range(4000):  # the queue stays above 512 from here on
            tracer.start_span("s").end()
        elapsed = time.monotonic() - started
        assert exporter.calls == 1
        assert processor.queue_length() > 3000
        # Over a hundred chances to yield; only the probes every 100 ms are taken (the
        # first may still see the worker's last CPU on its way into the wait).
        yields = processor._worker_yield.yields - before
        assert yields <= 2 + elapsed / 0.1, (yields, elapsed)
    finally:
        exporter.release.set()
        provider.shutdown()


def test_a_cpu_bound_worker_gets_yields_and_keeps_up() -> None:
    """A worker that needs the GIL gets it: the queue does not grow past the yield mark by much."""
    done: list[int] = []

    class EncodingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:  # pure-Python work per span, like the OTLP encoder
                sum(len(str(value)) for value in (span.attributes or {}).values())
                sum(range(2000))
            done.append(len(spans))
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    processor = DropCountingSpanProcessor(
        EncodingExporter(), max_queue_size=8192, max_export_batch_size=256
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("busy")
    model, rows = fitted_model("logistic")
    deepest = 0
    try:
        for i in range(6000):
            with tracer.start_as_current_span("predict"):
                model.predict(rows[i % 512 : i % 512 + 1])  # releases and re-takes the GIL
            deepest = max(deepest, processor.queue_length())
        # Without the yields the queue passes 5,000 here: the worker gets no GIL at all.
        assert deepest < 8192 // 2, deepest
        assert sum(done) >= 6000 - deepest - 256
    finally:
        provider.shutdown()


def test_embedded_drift_worker_keeps_up_with_a_scikit_learn_model() -> None:
    """configure(drift=agg): the ingest worker gets the GIL, so its buffer does not fill."""
    model, rows = fitted_model("logistic")
    names = [f"x{i}" for i in range(rows.shape[1])]
    aggregator = DriftAggregator(":memory:")
    aggregator.set_reference("drift-load", "1", Reference.from_data(rows, feature_names=names))
    processor = DriftSpanProcessor(aggregator, max_queue=4096, batch_size=256)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    handle = modeltrace.configure(
        tracer_provider=provider, metric_readers=[InMemoryMetricReader()], set_global=False
    )
    try:
        monitored = modeltrace.wrap(
            model, model="drift-load", version="1", feature_names=names, sample_rate=1.0
        )
        deepest = 0
        for i in range(8000):
            monitored.predict(rows[i % 512 : i % 512 + 1])
            deepest = max(deepest, len(processor._buffer))
        processor.force_flush()
        # Without the yields the buffer reaches its cap here and spans are dropped.
        assert processor.dropped_spans == 0, deepest
        assert deepest < 4096 // 2, deepest
        assert processor.ingested_spans == 8000
        assert aggregator.evaluate("drift-load", "1").n_samples == 8000
    finally:
        handle.shutdown()
        aggregator.close()
