"""A real span load: a fitted scikit-learn model predicting single rows under ``modeltrace.wrap``.

Spans go through a batch span processor and the real OTLP/HTTP exporter to an
OTLP receiver running in a child process (as a Collector would: its decoding
does not compete for this process's GIL). ``run_load`` counts the spans
produced (one per predict call), the spans the exporter delivered, and, for
modeltrace's processor, the drops reported by the ``modeltrace.sdk.spans.dropped``
self-metric. Used by tests/test_span_drops.py and benchmarks/span_drops.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import modeltrace
from modeltrace import runtime, semconv
from sdk_harness import data_points

_SERVER_ATTRIBUTES = {
    "http.request.method": "POST",
    "http.route": "/predict",
    "url.scheme": "http",
    "server.address": "127.0.0.1",
    "http.response.status_code": 200,
}

_RECEIVER_CODE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from otlp_receiver import OtlpReceiver
latency = float(sys.argv[2]) / 1000.0
if latency > 0:
    store = OtlpReceiver._store
    def delayed_store(self, path, body):
        time.sleep(latency)
        return store(self, path, body)
    OtlpReceiver._store = delayed_store
receiver = OtlpReceiver().start()
print(receiver.endpoint, flush=True)
sys.stdin.read()
receiver.stop()
"""


class ReceiverProcess:
    """tests/otlp_receiver.OtlpReceiver in a child process; ``endpoint`` is its base URL.

    ``latency_ms`` delays each answer, like a Collector one network hop away.
    """

    def __init__(self, latency_ms: float = 0.0) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms}")
        here = os.path.dirname(os.path.abspath(__file__))
        self._process = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER_CODE, here, str(latency_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.endpoint = self._process.stdout.readline().strip()
        if not self.endpoint.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"OTLP receiver did not start: {self.endpoint!r}")

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class CountingExporter(SpanExporter):
    """Delegates to a real exporter and counts the spans it delivered."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            with self._lock:
                self.exported += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


@dataclass(frozen=True)
class LoadResult:
    processor: str
    seconds: float
    produced: int
    exported: int
    counted_drops: int | None  # modeltrace's self-metric; None for the SDK's processor
    exported_during_load: int  # before the final flush: the exporter kept up, or not
    max_queue: int | None  # deepest queue seen (modeltrace's processor only)

    @property
    def dropped(self) -> int:
        return self.produced - self.exported

    @property
    def rate(self) -> float:
        return self.produced / self.seconds

    @property
    def drop_share(self) -> float:
        return self.dropped / self.produced if self.produced else 0.0


def fitted_model(kind: str = "logistic", n_features: int = 20) -> tuple[Any, np.ndarray]:
    """A fitted scikit-learn classifier and rows to predict, from a seeded synthetic task."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, n_features))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=2000) > 0).astype(int)
    model: Any
    if kind == "forest":
        model = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    elif kind == "logistic":
        model = LogisticRegression(max_iter=200)
    else:
        raise ValueError(f"model kind must be 'logistic' or 'forest', got {kind!r}")
    model.fit(x, y)
    return model, x[:512]


def _dropped_from_metrics(reader: InMemoryMetricReader) -> int:
    return int(
        sum(point.value for point in data_points(reader).get(semconv.METRIC_SDK_SPANS_DROPPED, []))
    )


def run_load(
    processor: str,
    endpoint: str,
    seconds: float,
    model_kind: str = "logistic",
    make_sdk_processor: Callable[[SpanExporter], SpanProcessor] = BatchSpanProcessor,
    lookups: int = 1,
    processor_settings: dict[str, int] | None = None,
) -> LoadResult:
    """Predict single rows for ``seconds`` with ``processor`` = "sdk-default" or "modeltrace".

    "sdk-default" is the SDK's ``BatchSpanProcessor`` with its default settings
    (queue 2048, batch 512, delay 5 s); "modeltrace" is what ``configure()``
    sets up by default. Both export with the OTLP/HTTP exporter to ``endpoint``.
    Each request makes ``2 + lookups`` spans: server, ``lookups`` feature
    lookups, the monitored prediction. ``processor_settings`` (max_queue_size,
    max_export_batch_size, schedule_delay_millis) override configure()'s defaults.
    """
    if lookups < 0:
        raise ValueError(f"lookups must be >= 0, got {lookups}")
    if processor not in ("sdk-default", "modeltrace"):
        raise ValueError(f"processor must be 'sdk-default' or 'modeltrace', got {processor!r}")
    model, rows = fitted_model(model_kind)
    exporter = CountingExporter(OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=10))
    reader = InMemoryMetricReader()
    sdk_processor: SpanProcessor | None = None
    if processor == "sdk-default":
        meter_provider = MeterProvider(metric_readers=[reader])
        tracer_provider = TracerProvider()
        sdk_processor = make_sdk_processor(exporter)
        tracer_provider.add_span_processor(sdk_processor)
        handle = modeltrace.configure(
            tracer_provider=tracer_provider, meter_provider=meter_provider, set_global=False
        )
    else:
        handle = modeltrace.configure(
            span_exporter=exporter,
            metric_readers=[reader],
            set_global=False,
            **(processor_settings or {}),
        )
        tracer_provider = handle.tracer_provider
        meter_provider = handle.meter_provider
    tracer = tracer_provider.get_tracer("span-load")
    try:
        monitored = modeltrace.wrap(model, model="load", version="1")
        calls = 0
        max_queue = 0
        own = handle.span_processor
        n_rows = len(rows)
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            for _ in range(16):
                row = rows[calls % n_rows : calls % n_rows + 1]
                # One request of a serving app: a server span, the feature lookup
                # and the monitored prediction (the processor sees all of them).
                with tracer.start_as_current_span(
                    "POST /predict", kind=SpanKind.SERVER, attributes=_SERVER_ATTRIBUTES
                ):
                    for _ in range(lookups):
                        with tracer.start_as_current_span("feature lookup"):
                            row = np.ascontiguousarray(row)
                    monitored.predict(row)
                calls += 1
            if own is not None:
                max_queue = max(max_queue, own.queue_length())
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - started
        produced = calls * (2 + lookups)
        exported_during_load = exporter.exported
        if sdk_processor is not None:
            sdk_processor.force_flush(30000)
        else:
            handle.force_flush(30000)
        counted = _dropped_from_metrics(reader) if processor == "modeltrace" else None
        return LoadResult(
            processor,
            elapsed,
            produced,
            exporter.exported,
            counted,
            exported_during_load,
            max_queue if own is not None else None,
        )
    finally:
        handle.shutdown(10000)
        if sdk_processor is not None:
            sdk_processor.shutdown()
            meter_provider.shutdown()
        runtime.reset()
