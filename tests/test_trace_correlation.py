"""Root-cause links from metrics and logs back to the prediction's trace.

* Exemplars: ``ml.model.predict.duration`` (and ``ml.model.predict.errors``) data
  points carry the trace id and span id of the prediction span, through the SDK's
  trace-based exemplar filter (the SDK default, kept by ``configure()``).
* Log correlation: with ``opentelemetry-instrumentation-logging``'s
  ``LoggingInstrumentor``, a log record emitted inside a monitored call carries
  that call's trace and span ids (``otelTraceID`` / ``otelSpanID``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import modeltrace
from modeltrace import runtime, semconv
from sdk_harness import Telemetry, data_points, telemetry  # noqa: F401 (fixture)


def _collect(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Metric name -> points of ONE collection (exemplars are reset by each collection)."""
    out = data_points(reader)
    assert out, "the reader collected nothing"
    return out


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    return _collect(reader).get(name, [])


def _ids(span: ReadableSpan) -> tuple[int, int]:
    context = span.get_span_context()
    return context.trace_id, context.span_id


def test_duration_histogram_carries_the_prediction_span_as_exemplar(
    telemetry: Telemetry,  # noqa: F811
) -> None:
    @modeltrace.monitor(model="churn", version="3")
    def predict(rows: list[list[float]]) -> list[int]:
        return [int(sum(row) > 0) for row in rows]

    predict([[0.5, 1.0], [-2.0, 0.1]])
    span = telemetry.span()
    (point,) = _points(telemetry.reader, semconv.METRIC_PREDICT_DURATION)
    assert point.count == 1
    assert len(point.exemplars) == 1
    exemplar = point.exemplars[0]
    assert (exemplar.trace_id, exemplar.span_id) == _ids(span)
    # The exemplar is the measurement itself: its value is the recorded duration,
    # inside the span's own time range.
    assert exemplar.value == pytest.approx(point.sum)
    assert 0 < exemplar.value <= (span.end_time - span.start_time) / 1e9 + 1e-3


def test_failed_call_exemplars_on_duration_and_errors(telemetry: Telemetry) -> None:  # noqa: F811
    @modeltrace.monitor(model="churn", version="3")
    def predict(rows: list[list[float]]) -> list[int]:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        predict([[1.0, 2.0]])
    span = telemetry.span()
    collected = _collect(telemetry.reader)
    durations = collected[semconv.METRIC_PREDICT_DURATION]
    failed = [p for p in durations if p.attributes.get(semconv.ERROR_TYPE) == "ValueError"]
    assert len(failed) == 1
    assert [(e.trace_id, e.span_id) for e in failed[0].exemplars] == [_ids(span)]
    (errors,) = collected[semconv.METRIC_PREDICT_ERRORS]
    assert errors.value == 1
    assert [(e.trace_id, e.span_id) for e in errors.exemplars] == [_ids(span)]


def test_each_bucket_keeps_the_trace_of_a_call_that_landed_in_it(
    telemetry: Telemetry,  # noqa: F811
) -> None:
    """Aligned-bucket reservoir: one exemplar per non-empty bucket, from a call in it."""
    import time

    @modeltrace.monitor(model="latency", version="1")
    def predict(row: list[float]) -> float:
        time.sleep(row[0])
        return row[0]

    predict([0.0])  # sub-millisecond
    predict([0.03])  # the 0.025 .. 0.05 s bucket
    (point,) = _points(telemetry.reader, semconv.METRIC_PREDICT_DURATION)
    assert point.count == 2 and len(point.exemplars) == 2
    by_trace = {e.trace_id: e for e in point.exemplars}
    slept = {0: 0.0, 1: 0.03}
    for i, span in enumerate(sorted(telemetry.spans(), key=lambda s: s.start_time)):
        exemplar = by_trace[span.get_span_context().trace_id]
        # The exemplar is this call's duration: at least its sleep, within its span.
        assert slept[i] <= exemplar.value <= (span.end_time - span.start_time) / 1e9 + 1e-6
    values = sorted(e.value for e in point.exemplars)
    assert values[0] < 0.025 <= 0.03 <= values[1]  # one exemplar in each bucket


def test_unsampled_calls_leave_no_exemplar() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    handle = modeltrace.configure(
        tracer_provider=tracer_provider, meter_provider=meter_provider, set_global=False
    )
    try:

        @modeltrace.monitor(model="churn", version="3")
        def predict(x: float) -> float:
            return x * 2

        assert predict(2.0) == 4.0
        (point,) = _points(reader, semconv.METRIC_PREDICT_DURATION)
        assert point.count == 1
        assert point.exemplars == []
    finally:
        handle.shutdown()
        runtime.reset()


def test_configure_keeps_the_trace_based_filter_and_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Providers made by ``configure()`` use OTEL_METRICS_EXEMPLAR_FILTER (default trace_based)."""
    seen: dict[str, int] = {}
    for setting in ("", "always_off"):
        if setting:
            monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", setting)
        else:
            monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
        exporter = InMemorySpanExporter()
        reader = InMemoryMetricReader()
        handle = modeltrace.configure(
            span_exporter=exporter, metric_readers=[reader], set_global=False
        )
        try:

            @modeltrace.monitor(model="churn", version="3")
            def predict(x: float) -> float:
                return x + 1

            predict(1.0)
            (point,) = _points(reader, semconv.METRIC_PREDICT_DURATION)
            seen[setting or "default"] = len(point.exemplars)
        finally:
            handle.shutdown()
    assert seen == {"default": 1, "always_off": 0}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records() -> Iterator[_Records]:
    instrumentor = LoggingInstrumentor()
    instrumentor.instrument(inject_trace_context=True, enable_log_auto_instrumentation=False)
    handler = _Records()
    app_logger = logging.getLogger("app.model")
    app_logger.addHandler(handler)
    app_logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        app_logger.removeHandler(handler)
        instrumentor.uninstrument()


def test_log_records_inside_a_monitored_call_carry_its_trace(
    telemetry: Telemetry,  # noqa: F811
    log_records: _Records,
) -> None:
    app_logger = logging.getLogger("app.model")

    @modeltrace.monitor(model="churn", version="3")
    def predict(x: float) -> float:
        app_logger.info("scoring %s", x)
        return x * 3

    app_logger.info("before any call")
    assert predict(1.5) == 4.5
    span = telemetry.span()
    outside, inside = log_records.records
    trace_id, span_id = _ids(span)
    assert inside.otelTraceID == format(trace_id, "032x")  # type: ignore[attr-defined]
    assert inside.otelSpanID == format(span_id, "016x")  # type: ignore[attr-defined]
    assert inside.otelTraceSampled is True  # type: ignore[attr-defined]
    assert outside.otelTraceID == "0"  # type: ignore[attr-defined]
    # The documented format string renders the ids.
    formatter = logging.Formatter("%(message)s trace_id=%(otelTraceID)s span_id=%(otelSpanID)s")
    assert formatter.format(inside) == (
        f"scoring 1.5 trace_id={trace_id:032x} span_id={span_id:016x}"
    )


def test_async_monitored_call_logs_carry_its_trace(
    telemetry: Telemetry,  # noqa: F811
    log_records: _Records,
) -> None:
    import asyncio

    app_logger = logging.getLogger("app.model")

    @modeltrace.monitor(model="churn", version="3")
    async def predict(x: float) -> float:
        await asyncio.sleep(0)
        app_logger.warning("async scoring")
        return x

    assert asyncio.run(predict(2.0)) == 2.0
    span = telemetry.span()
    (record,) = log_records.records
    assert record.otelTraceID == format(span.get_span_context().trace_id, "032x")  # type: ignore[attr-defined]


def test_logs_exported_as_otel_logs_carry_the_prediction_span(
    telemetry: Telemetry,  # noqa: F811
) -> None:
    """The OTLP-logs path: LoggingHandler -> LoggerProvider; trace/span ids are log fields."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=logger_provider)
    app_logger = logging.getLogger("app.model.otlp")
    app_logger.addHandler(handler)
    app_logger.setLevel(logging.INFO)
    try:

        @modeltrace.monitor(model="churn", version="3")
        def predict(x: float) -> float:
            app_logger.error("feature x out of range: %s", x)
            return x

        predict(99.0)
    finally:
        app_logger.removeHandler(handler)
        logger_provider.shutdown()
    span = telemetry.span()
    (exported,) = exporter.get_finished_logs()
    record = exported.log_record
    assert record.body == "feature x out of range: 99.0"
    assert (record.trace_id, record.span_id) == _ids(span)
