"""A client process for the service tests: the real decorator feeding the real OTLP exporters.

Run as ``python tests/service_client.py --endpoint ... --protocol http|grpc ...``.
It calls a ``@modeltrace.monitor``-decorated predict function on seeded numpy
batches (optionally shifted, to cause drift), collects the finished spans from
the SDK, and exports them in batches with ``OTLPSpanExporter`` (HTTP protobuf
or gRPC). After every batch it appends a JSON line to ``--out`` saying how many
spans were acknowledged (exporter SUCCESS) or failed, so a test can kill the
service at any moment and still know what was acknowledged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

os.environ.setdefault("MODELTRACE_SAMPLE_RATE", "1")

import modeltrace


def feature_names(count: int) -> list[str]:
    return [f"x{i}" for i in range(count)]


def make_spans(args: argparse.Namespace) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "service-test-client"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)

    names = feature_names(args.features)

    @modeltrace.monitor(
        model=args.model, version=args.version, feature_names=names, sample_rate=1.0
    )
    def predict(batch: np.ndarray) -> np.ndarray:
        return (batch.sum(axis=1) > 0).astype(np.int64)

    rng = np.random.default_rng(args.seed)
    for _ in range(args.spans):
        predict(rng.normal(args.shift, 1.0, size=(args.rows, args.features)))
    provider.force_flush()
    spans = list(memory.get_finished_spans())
    if len(spans) != args.spans:
        raise SystemExit(f"expected {args.spans} spans from the decorator, got {len(spans)}")
    return spans


def make_exporter(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if args.certificate is not None:
            import grpc

            credentials = grpc.ssl_channel_credentials(args.certificate.read_bytes())
            return OTLPSpanExporter(
                endpoint=args.endpoint,
                insecure=False,
                credentials=credentials,
                headers=headers,
                timeout=args.timeout,
            )
        return OTLPSpanExporter(
            endpoint=args.endpoint, insecure=True, headers=headers, timeout=args.timeout
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    compression = Compression.Gzip if args.gzip else Compression.NoCompression
    return OTLPSpanExporter(
        endpoint=args.endpoint,
        headers=headers,
        timeout=args.timeout,
        compression=compression,
        certificate_file=str(args.certificate) if args.certificate is not None else None,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--model", default="churn")
    parser.add_argument("--version", default="1")
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--token", default=None)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--stop-on-failure", action="store_true", help="stop after a failed batch")
    parser.add_argument("--certificate", type=Path, default=None, help="CA/cert PEM for TLS")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    spans = make_spans(args)
    exporter = make_exporter(args)
    with args.out.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"ready": True}) + "\n")
        out.flush()
        for start in range(0, len(spans), args.batch):
            batch = spans[start : start + args.batch]
            began = time.perf_counter()
            result = exporter.export(batch)
            line = {
                "acked" if result is SpanExportResult.SUCCESS else "failed": len(batch),
                "seconds": time.perf_counter() - began,
            }
            out.write(json.dumps(line) + "\n")
            out.flush()
            if args.stop_on_failure and result is not SpanExportResult.SUCCESS:
                out.write(json.dumps({"unsent": len(spans) - start - len(batch)}) + "\n")
                break
    exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
