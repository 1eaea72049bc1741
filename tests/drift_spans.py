"""Helpers for the drift plumbing tests: prediction spans from the real SDK and
OTLP requests from the real protobuf classes, in the documented span layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modeltrace import semconv


class SpanFactory:
    """Finished SDK spans with hand-set attributes (real TracerProvider)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("drift-tests")

    def span(self, name: str, attributes: Mapping[str, Any]) -> ReadableSpan:
        self.exporter.clear()
        with self.tracer.start_as_current_span(name, attributes=dict(attributes)):
            pass
        (span,) = self.exporter.get_finished_spans()
        return span

    def close(self) -> None:
        self.provider.shutdown()


def prediction_attributes(
    model: str,
    version: str,
    features: Mapping[str, Any],
    *,
    rate: float | None = 1.0,
    prediction: Any = None,
) -> dict[str, Any]:
    """The documented layout: arrays (lists) for several rows, scalars for one row."""
    attrs: dict[str, Any] = {semconv.MODEL_NAME: model, semconv.MODEL_VERSION: version}
    if rate is not None:
        attrs[semconv.SAMPLE_RATE] = rate
    n = None
    for name, values in features.items():
        attrs[semconv.FEATURE_PREFIX + name] = values
        if isinstance(values, (list, tuple)):
            n = len(values)
    attrs[semconv.SAMPLE_INDICES] = list(range(n if n is not None else 1))
    if prediction is not None:
        attrs[semconv.PREDICTION_VALUE] = prediction
    return attrs


def random_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, list[Any]]:
    """Rows of a small mixed table: two numeric features and one categorical."""
    return {
        "age": (rng.normal(40.0 + shift * 10.0, 10.0, n)).tolist(),
        "income": (rng.lognormal(10.0 + shift, 0.5, n)).tolist(),
        "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]).tolist(),
    }


def to_request(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The request the SDK's OTLP exporter would send for these spans."""
    return encode_spans(list(spans))


def any_value(value: Any) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend([any_value(v) for v in value])
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(
            [KeyValue(key=k, value=any_value(v)) for k, v in value.items()]
        )
        return out
    raise TypeError(type(value))


def otlp_request(
    spans: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    trace_id: bytes = bytes(range(16)),
    end_ns: int = 1_700_000_000_000_000_000,
) -> ExportTraceServiceRequest:
    """A request built by hand with the real protobuf classes: (name, attributes) per span."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i, (name, attributes) in enumerate(spans):
        span = scope.spans.add()
        span.name = name
        span.trace_id = trace_id
        span.span_id = (i + 1).to_bytes(8, "big")
        span.start_time_unix_nano = end_ns - 1000
        span.end_time_unix_nano = end_ns
        for key, value in attributes.items():
            span.attributes.add(key=key, value=any_value(value))
    return request
