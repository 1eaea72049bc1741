"""The service's metrics pipeline: one MeterProvider for drift gauges and self-metrics.

Readers: a Prometheus reader on a dedicated ``CollectorRegistry`` (rendered by
``GET /metrics``; never the process-global registry) and, with
``--export-endpoint``, a periodic OTLP/HTTP exporter so any OTLP backend gets
the ``ml.drift.*`` gauges. The aggregator receives this provider and publishes
through it; :class:`ServiceMetrics` holds the service's own instruments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from modeltrace import __version__
from modeltrace.semconv import SCOPE

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Self-metric names (service internals, not part of the SPEC's drift names).
METRIC_SPANS_RECEIVED = "modeltrace.service.spans.received"
METRIC_SPANS_REJECTED = "modeltrace.service.spans.rejected"
METRIC_REQUESTS = "modeltrace.service.requests"
METRIC_QUEUE_DEPTH = "modeltrace.service.queue.depth"
METRIC_QUEUE_BYTES = "modeltrace.service.queue.bytes"
METRIC_COMMIT_DURATION = "modeltrace.service.commit.duration"
METRIC_COMMIT_BATCH = "modeltrace.service.commit.batch.size"
ATTR_TRANSPORT = "transport"
COMMIT_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ATTR_OUTCOME = "outcome"


class MetricsPipeline:
    """Owns the MeterProvider and renders the Prometheus exposition."""

    def __init__(self, export_endpoint: str | None = None, export_interval: float = 60.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry)]
        if export_endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=export_endpoint),
                    export_interval_millis=export_interval * 1000.0,
                )
            )
        resource = Resource.create(
            {"service.name": "modeltrace-aggregator", "service.version": __version__}
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    def render_prometheus(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self.meter_provider.shutdown()


class ServiceMetrics:
    """Self-metrics: spans received/rejected, requests by outcome, queue depth, commit latency."""

    def __init__(
        self,
        meter: Meter,
        queue_depth: Callable[[], int],
        queue_bytes: Callable[[], int],
    ) -> None:
        self._queue_depth = queue_depth
        self._queue_bytes = queue_bytes
        self.spans_received = meter.create_counter(
            METRIC_SPANS_RECEIVED, unit="{span}", description="Spans in acknowledged exports"
        )
        self.spans_rejected = meter.create_counter(
            METRIC_SPANS_REJECTED,
            unit="{span}",
            description="Spans acknowledged but not usable (reported as OTLP partial success)",
        )
        self.requests = meter.create_counter(
            METRIC_REQUESTS,
            unit="{request}",
            description="Export requests by transport and outcome",
        )
        self.commit_duration = meter.create_histogram(
            METRIC_COMMIT_DURATION,
            unit="s",
            description="Duration of one group commit to the store",
            explicit_bucket_boundaries_advisory=COMMIT_BUCKETS_SECONDS,
        )
        self.commit_batch = meter.create_histogram(
            METRIC_COMMIT_BATCH,
            unit="{request}",
            description="Requests committed together in one group commit",
            explicit_bucket_boundaries_advisory=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
        )
        meter.create_observable_gauge(
            METRIC_QUEUE_DEPTH,
            callbacks=[self._observe_depth],
            unit="{request}",
            description="Requests waiting for their group commit",
        )
        meter.create_observable_gauge(
            METRIC_QUEUE_BYTES,
            callbacks=[self._observe_bytes],
            unit="By",
            description="Bytes of requests waiting for their group commit",
        )

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._queue_depth())]

    def _observe_bytes(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._queue_bytes())]

    def record_request(self, transport: str, outcome: str) -> None:
        self.requests.add(1, {ATTR_TRANSPORT: transport, ATTR_OUTCOME: outcome})

    def record_commit(self, seconds: float, requests: int) -> None:
        self.commit_duration.record(seconds)
        self.commit_batch.record(requests)


def service_meter(pipeline: MetricsPipeline) -> Meter:
    return pipeline.meter_provider.get_meter(f"{SCOPE}.service", __version__)
