"""configure(): OTLP round trips, OTEL_* variables, existing providers, drift, dead endpoints."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import modeltrace
from modeltrace import semconv
from otlp_receiver import OtlpReceiver
from sdk_harness import data_points


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@modeltrace.monitor(model="churn", version="3")
def predict(x):
    return np.asarray(x).sum(axis=-1)


def test_otlp_http_round_trip_with_arguments() -> None:
    with OtlpReceiver() as receiver:
        handle = modeltrace.configure(
            service_name="churn-api",
            endpoint=receiver.endpoint,
            protocol="http/protobuf",
            headers={"x-team": "ml"},
            resource_attributes={"deployment.environment": "test"},
            schedule_delay_millis=50,
            set_global=False,
            sample_rate=1.0,
        )
        try:
            predict({"age": 41, "city": "Oslo"})
            predict(np.ones((3, 2)))
            spans = receiver.wait_for_spans(lambda s: len(s) >= 2, timeout=10)
            assert handle.force_flush(5000)
        finally:
            assert handle.shutdown(5000)
        one, batch = spans[:2]
        assert one.name == "predict churn" and one.kind == "INTERNAL"
        assert one.resource["service.name"] == "churn-api"
        assert one.resource["deployment.environment"] == "test"
        assert one.attributes[semconv.FEATURE_PREFIX + "age"] == 41
        assert one.attributes[semconv.FEATURE_PREFIX + "city"] == "Oslo"
        assert one.attributes[semconv.BATCH_SIZE] == 1
        assert batch.attributes[semconv.SAMPLE_INDICES] == [0, 1, 2]
        assert batch.attributes[semconv.PREDICTION_VALUE] == [2.0, 2.0, 2.0]
        assert batch.attributes[semconv.FEATURE_PREFIX + "f1"] == [1.0, 1.0, 1.0]
        assert semconv.METRIC_PREDICT_DURATION in receiver.metric_names()
        assert semconv.METRIC_PREDICTIONS in receiver.metric_names()


def test_otel_variables_are_honoured(monkeypatch) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=risk")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        monkeypatch.setenv("MODELTRACE_CAPTURE_FEATURES", "false")
        handle = modeltrace.configure(set_global=False)
        try:
            predict({"age": 1})
            (span,) = receiver.wait_for_spans(lambda s: len(s) >= 1, timeout=10)
        finally:
            handle.shutdown(5000)
        assert span.resource["service.name"] == "from-env"
        assert span.resource["team"] == "risk"
        assert not any(k.startswith(semconv.FEATURE_PREFIX) for k in span.attributes)


def test_drift_processor_gets_every_prediction_span() -> None:
    sink = InMemorySpanExporter()

    class Aggregator:
        def span_processor(self) -> SimpleSpanProcessor:
            return SimpleSpanProcessor(sink)

    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    handle = modeltrace.configure(
        drift=Aggregator(),
        span_exporter=exporter,
        metric_readers=[reader],
        set_global=False,
    )
    try:
        for i in range(5):
            predict([float(i), 1.0])
        got: list[ReadableSpan] = list(sink.get_finished_spans())
        assert [s.name for s in got] == ["predict churn"] * 5
        assert [s.attributes[semconv.PREDICTION_VALUE] for s in got] == [1.0, 2.0, 3.0, 4.0, 5.0]
    finally:
        handle.shutdown(5000)
    with pytest.raises(TypeError, match="span_processor"):
        modeltrace.configure(drift=object(), set_global=False)


def test_existing_global_providers_are_used_not_replaced(tmp_path) -> None:
    script = textwrap.dedent(
        """
        from opentelemetry import trace, metrics
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import modeltrace
        exporter = InMemorySpanExporter()
        tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader(); mp = MeterProvider(metric_readers=[reader])
        trace.set_tracer_provider(tp); metrics.set_meter_provider(mp)
        handle = modeltrace.configure(endpoint="http://127.0.0.1:1")
        assert handle.tracer_provider is tp and not handle.owns_tracer_provider
        assert handle.meter_provider is mp and not handle.owns_meter_provider
        modeltrace.monitor(model="m", version="1")(lambda x: 1)([1])
        names = [m.name for rm in reader.get_metrics_data().resource_metrics
                 for sm in rm.scope_metrics for m in sm.metrics]
        handle.shutdown(1000)
        print([s.name for s in exporter.get_finished_spans()], "ml.model.predictions" in names)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['predict m'] True"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_dead_endpoint_never_blocks_and_shutdown_is_bounded(protocol: str) -> None:
    reader = InMemoryMetricReader()
    handle = modeltrace.configure(
        endpoint=f"http://127.0.0.1:{_closed_port()}",
        protocol=protocol,
        schedule_delay_millis=20,
        max_queue_size=64,
        max_export_batch_size=16,
        export_timeout_millis=30000,
        metric_readers=[reader],
        set_global=False,
    )
    slowest = 0.0
    for i in range(300):
        started = time.perf_counter()
        predict([float(i)])
        slowest = max(slowest, time.perf_counter() - started)
    # A predict call never waits for the exporter, which retries for up to 30 s. The
    # bounds sit far below that failure mode and far above scheduling noise on a
    # loaded 2-core machine (load 10 was seen to stretch a call past 1 s).
    assert slowest < 5.0
    started = time.perf_counter()
    handle.shutdown(1500)
    assert time.perf_counter() - started < 10.0
    points = data_points(reader).get(semconv.METRIC_SDK_SPANS_DROPPED, [])
    dropped = sum(p.value for p in points)
    assert dropped > 0
    assert {p.attributes[semconv.DROP_REASON] for p in points} <= {
        "queue_full",
        "export_failed",
        "shutdown",
    }


def test_drops_are_counted_exactly() -> None:
    reader = InMemoryMetricReader()
    handle = modeltrace.configure(
        endpoint=f"http://127.0.0.1:{_closed_port()}",
        protocol="http/protobuf",
        schedule_delay_millis=10,
        max_queue_size=8,
        max_export_batch_size=8,
        export_timeout_millis=200,
        metric_readers=[reader],
        set_global=False,
    )
    for i in range(100):
        predict([float(i)])
    assert handle.shutdown(5000)
    points = data_points(reader).get(semconv.METRIC_SDK_SPANS_DROPPED, [])
    # nothing reached the dead endpoint: every one of the 100 spans is counted as lost
    assert sum(p.value for p in points) == 100


def test_invalid_arguments_are_precise() -> None:
    with pytest.raises(ValueError, match="protocol"):
        modeltrace.configure(protocol="udp", set_global=False)
    with pytest.raises(ValueError, match="max_queue_size"):
        modeltrace.configure(max_queue_size=0, set_global=False)
    with pytest.raises(TypeError, match="nonsense"):
        modeltrace.configure(nonsense=True, set_global=False)
    with pytest.raises(ValueError, match="headers"):
        modeltrace.configure(headers="novalue", set_global=False)


_EXIT_SCRIPT = """
import sys
import modeltrace

handle = modeltrace.configure(service_name="exit-test", endpoint=sys.argv[1],
                              protocol="http/protobuf", export_timeout_millis=30000,
                              shutdown_timeout_millis=1500)

@modeltrace.monitor(model="exit", version="1")
def predict(x):
    return x

for i in range(3):
    predict(i)
"""


def test_pending_spans_leave_at_exit() -> None:
    # configure() replaces the SDK providers' own exit hooks by one bounded,
    # idempotent handle.shutdown(): pending spans still leave at interpreter exit.
    with OtlpReceiver() as receiver:
        proc = subprocess.run(
            [sys.executable, "-c", _EXIT_SCRIPT, receiver.endpoint],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        spans = receiver.wait_for_spans(lambda s: len(s) >= 3)
    assert [s.attributes[semconv.MODEL_NAME] for s in spans] == ["exit"] * 3


def test_exit_on_a_dead_endpoint_is_bounded_by_the_shutdown_timeout() -> None:
    # The SDK's own exit hooks would retry the export for its whole timeout (30 s
    # here) per provider; modeltrace's exit hook gives up after shutdown_timeout (1.5 s).
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, f"http://127.0.0.1:{_closed_port()}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 15.0, f"exit took {elapsed:.1f} s with a 1.5 s shutdown timeout"
