"""``configure()``: tracer and meter providers, OTLP exporters and processors, in one call.

Where the application (or ``opentelemetry-instrument``) already installed SDK
providers, they are used as they are: no exporter is added. Otherwise new
providers get an OTLP exporter (gRPC or HTTP/protobuf) behind a
``DropCountingSpanProcessor`` and a periodic metric reader, and become the
global providers if none is set. Arguments beat ``OTEL_*`` / ``MODELTRACE_*``
variables, which beat defaults. The returned handle flushes and shuts down
what ``configure()`` created, always within its timeout.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from modeltrace import runtime, semconv
from modeltrace.export import (
    DEFAULT_EXPORT_TIMEOUT_MILLIS,
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SCHEDULE_DELAY_MILLIS,
    DropCountingSpanProcessor,
)
from modeltrace.settings import load_settings

logger = logging.getLogger("modeltrace")

PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"
DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5000

_created_tracer_providers: list[TracerProvider] = []
_created_meter_providers: list[MeterProvider] = []


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: expected a positive integer")
    return value


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _protocol(protocol: str | None) -> str:
    value = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or DEFAULT_PROTOCOL
    ).strip()
    if value == "http":
        value = "http/protobuf"
    if value not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {value!r}")
    return value


def _headers(headers: Mapping[str, str] | str | None) -> dict[str, str] | None:
    if headers is None:
        return None
    if isinstance(headers, str):
        parsed: dict[str, str] = {}
        for part in headers.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"headers: expected 'key=value' pairs, got {part!r}")
            parsed[key.strip().lower()] = value.strip()
        return parsed
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping or 'k=v,...' string, got {headers!r}")
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _exporters(
    protocol: str, endpoint: str | None, headers: dict[str, str] | None, timeout_s: float
) -> tuple[SpanExporter, Any]:
    """(span exporter, metric exporter) for the protocol; None arguments defer to OTEL_*."""
    options: dict[str, Any] = {"timeout": timeout_s}
    if headers is not None:
        options["headers"] = headers
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if endpoint is not None:
            options["endpoint"] = endpoint
            options["insecure"] = endpoint.startswith("http://")
        return OTLPSpanExporter(**options), OTLPMetricExporter(**options)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    span_options = dict(options)
    metric_options = dict(options)
    if endpoint is not None:
        base = endpoint.rstrip("/")
        span_options["endpoint"] = base + "/v1/traces"
        metric_options["endpoint"] = base + "/v1/metrics"
    return HTTPSpanExporter(**span_options), HTTPMetricExporter(**metric_options)


def _resource(service_name: str | None, resource_attributes: Mapping[str, Any] | None) -> Resource:
    attributes: dict[str, Any] = dict(resource_attributes or {})
    if service_name is not None:
        if not isinstance(service_name, str) or not service_name:
            raise ValueError(f"service_name must be a non-empty string, got {service_name!r}")
        attributes[SERVICE_NAME] = service_name
    return Resource.create(attributes)


class _DropCounter:
    """Counts dropped spans on the meter provider ``configure()`` chose, once it exists."""

    def __init__(self) -> None:
        self.counter: Any = None

    def __call__(self, count: int, reason: str) -> None:
        counter = self.counter
        if counter is None:
            counter = runtime.current().instruments.spans_dropped
        counter.add(count, {semconv.DROP_REASON: reason})


def _run_bounded(action: Callable[[], Any], timeout_s: float, what: str) -> bool:
    """Run ``action`` in a daemon thread; False if it did not finish within ``timeout_s``."""
    done = threading.Event()
    outcome: list[bool] = []

    def target() -> None:
        try:
            result = action()
            outcome.append(result is not False)
        except Exception:
            logger.exception("modeltrace: %s failed", what)
            outcome.append(False)
        finally:
            done.set()

    threading.Thread(target=target, name=f"modeltrace-{what}", daemon=True).start()
    if not done.wait(timeout_s):
        logger.warning("modeltrace: %s did not finish within %.1f s", what, timeout_s)
        return False
    return bool(outcome and outcome[0])


class ModeltraceHandle:
    """What ``configure()`` set up; ``force_flush()`` and ``shutdown()`` act on what it created."""

    def __init__(
        self,
        tracer_provider: Any,
        meter_provider: Any,
        owns_tracer_provider: bool,
        owns_meter_provider: bool,
        span_processor: DropCountingSpanProcessor | None,
        added_processors: list[SpanProcessor],
        shutdown_timeout_millis: int,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.owns_tracer_provider = owns_tracer_provider
        self.owns_meter_provider = owns_meter_provider
        self.span_processor = span_processor
        self._added_processors = added_processors
        self._shutdown_timeout_millis = shutdown_timeout_millis
        self._is_shut_down = False

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Export pending spans and metrics; False if not done within the timeout."""
        timeout_s = (timeout_millis or self._shutdown_timeout_millis) / 1000.0

        def flush() -> bool:
            ok = True
            flush_traces = getattr(self.tracer_provider, "force_flush", None)
            if flush_traces is not None:
                ok = bool(flush_traces(int(timeout_s * 1000))) and ok
            flush_metrics = getattr(self.meter_provider, "force_flush", None)
            if flush_metrics is not None:
                ok = bool(flush_metrics(int(timeout_s * 1000))) and ok
            return ok

        return _run_bounded(flush, timeout_s, "force-flush")

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Flush and stop what ``configure()`` created; returns within the timeout (default 5 s).

        Providers that existed before ``configure()`` are left running (only the
        span processors modeltrace added to them are shut down). Afterwards
        monitored calls fall back to the global providers and the environment.
        """
        if self._is_shut_down:
            return True
        self._is_shut_down = True
        timeout_s = (timeout_millis or self._shutdown_timeout_millis) / 1000.0
        runtime.reset()

        def stop() -> bool:
            if self.span_processor is not None:
                # Within this timeout (the provider would give it the SDK's default), so
                # spans it gives up on are counted before the meter provider shuts down.
                self.span_processor.shutdown(max(1, int(timeout_s * 800)))
            if self.owns_tracer_provider:
                self.tracer_provider.shutdown()
            else:
                for processor in self._added_processors:
                    processor.shutdown()
            if self.owns_meter_provider:
                self.meter_provider.shutdown(timeout_millis=max(1, int(timeout_s * 1000)))
            return True

        return _run_bounded(stop, timeout_s, "shutdown")


def configure(
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    drift: Any = None,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    span_exporter: SpanExporter | None = None,
    metric_readers: list[MetricReader] | None = None,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    schedule_delay_millis: int | None = None,
    export_timeout_millis: int | None = None,
    metric_export_interval_millis: int | None = None,
    shutdown_timeout_millis: int | None = None,
    set_global: bool = True,
    **settings: Any,
) -> ModeltraceHandle:
    """Set up tracing and metrics for modeltrace and return a handle.

    ``endpoint`` is the OTLP base URL (HTTP: ``/v1/traces`` and ``/v1/metrics``
    are appended; gRPC: ``host:port`` or ``http://host:port``). ``protocol`` is
    ``grpc`` or ``http/protobuf``. Left as None, they and ``headers`` come from
    the standard ``OTEL_EXPORTER_OTLP_*`` variables. ``tracer_provider`` /
    ``meter_provider`` use given providers as they are; ``span_exporter`` /
    ``metric_readers`` replace the OTLP exporter / reader of new providers.
    ``set_global=False`` neither uses nor sets the OpenTelemetry global
    providers (embedding, tests); by default existing SDK providers are used
    and new ones become global when none is set.
    ``drift``: an object with ``span_processor()`` (the ``DriftAggregator``),
    fed every finished span in-process. ``settings``: the capture settings
    (disabled, sample_rate, rows_per_second, max_rows, max_features,
    max_string_length, capture_features, capture_predictions, redact,
    redact_defaults, hash, hash_salt). Invalid values raise ``TypeError`` or
    ``ValueError`` naming the argument or variable.
    """
    resolved = load_settings(**settings)
    timeout_millis = _positive(
        "shutdown_timeout_millis", shutdown_timeout_millis, DEFAULT_SHUTDOWN_TIMEOUT_MILLIS
    )
    if resolved.disabled:
        runtime.install(tracer_provider, meter_provider, resolved)
        return ModeltraceHandle(
            tracer_provider, meter_provider, False, False, None, [], timeout_millis
        )
    processor_drift = None
    if drift is not None:
        make_processor = getattr(drift, "span_processor", None)
        if make_processor is None or not callable(make_processor):
            raise TypeError("drift must provide span_processor() (a DriftAggregator)")
        processor_drift = make_processor()
        if not isinstance(processor_drift, SpanProcessor):
            raise TypeError("drift.span_processor() must return an SDK SpanProcessor")

    queue_size = _positive(
        "max_queue_size",
        max_queue_size,
        _env_int("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE_SIZE),
    )
    batch_size = _positive(
        "max_export_batch_size",
        max_export_batch_size,
        min(queue_size, _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_MAX_EXPORT_BATCH_SIZE)),
    )
    delay = _positive(
        "schedule_delay_millis",
        schedule_delay_millis,
        _env_int("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MILLIS),
    )
    export_timeout = _positive(
        "export_timeout_millis",
        export_timeout_millis,
        _env_int("OTEL_BSP_EXPORT_TIMEOUT", DEFAULT_EXPORT_TIMEOUT_MILLIS),
    )
    interval = _positive(
        "metric_export_interval_millis",
        metric_export_interval_millis,
        _env_int("OTEL_METRIC_EXPORT_INTERVAL", 60000),
    )
    chosen_protocol = _protocol(protocol)
    parsed_headers = _headers(headers)
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()):
        raise ValueError(f"endpoint must be a non-empty URL string, got {endpoint!r}")

    added: list[SpanProcessor] = []
    drop_counter = _DropCounter()
    own_processor: DropCountingSpanProcessor | None = None
    metric_exporter: Any = None

    # --- traces ---
    owns_tp = False
    tp = tracer_provider
    if tp is None and set_global:
        current_tp = trace.get_tracer_provider()
        if isinstance(current_tp, trace.ProxyTracerProvider) or current_tp in (
            _created_tracer_providers
        ):
            tp = None
        else:
            tp = current_tp
    if tp is None:
        resource = _resource(service_name, resource_attributes)
        tp = TracerProvider(resource=resource, shutdown_on_exit=False)
        exporter = span_exporter
        if exporter is None:
            exporter, metric_exporter = _exporters(
                chosen_protocol, endpoint, parsed_headers, export_timeout / 1000.0
            )
        own_processor = DropCountingSpanProcessor(
            exporter,
            max_queue_size=queue_size,
            max_export_batch_size=batch_size,
            schedule_delay_millis=delay,
            on_drop=drop_counter,
        )
        tp.add_span_processor(own_processor)
        owns_tp = True
        _created_tracer_providers.append(tp)
        if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(tp)
    if processor_drift is not None:
        add = getattr(tp, "add_span_processor", None)
        if add is None:
            raise ValueError(
                "drift= needs an SDK TracerProvider; the tracer provider in use is "
                f"{type(tp).__name__}"
            )
        add(processor_drift)
        added.append(processor_drift)

    # --- metrics ---
    owns_mp = False
    mp = meter_provider
    if mp is None and set_global:
        current_mp = metrics.get_meter_provider()
        if type(current_mp).__name__ == "_ProxyMeterProvider" or current_mp in (
            _created_meter_providers
        ):
            mp = None
        else:
            mp = current_mp
    if mp is None:
        readers = list(metric_readers) if metric_readers is not None else []
        if metric_readers is None:
            if metric_exporter is None and span_exporter is None:
                _, metric_exporter = _exporters(
                    chosen_protocol, endpoint, parsed_headers, export_timeout / 1000.0
                )
            if metric_exporter is not None:
                readers.append(
                    PeriodicExportingMetricReader(
                        metric_exporter,
                        export_interval_millis=interval,
                        export_timeout_millis=export_timeout,
                    )
                )
        resource = getattr(tp, "resource", None) or _resource(service_name, resource_attributes)
        mp = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        owns_mp = True
        _created_meter_providers.append(mp)
        if set_global and type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
            metrics.set_meter_provider(mp)

    installed = runtime.install(tp, mp, resolved)
    drop_counter.counter = installed.instruments.spans_dropped
    handle = ModeltraceHandle(tp, mp, owns_tp, owns_mp, own_processor, added, timeout_millis)
    if owns_tp or owns_mp:
        # Instead of the SDK providers' own exit hooks (which would shut them down a
        # second time after handle.shutdown(), and wait the SDK's 30 s on a dead
        # endpoint): one bounded, idempotent shutdown at interpreter exit.
        atexit.register(handle.shutdown)
    return handle
