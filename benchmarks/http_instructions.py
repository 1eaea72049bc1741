"""CPU instructions per HTTP request (valgrind callgrind): plain OpenTelemetry against modeltrace.

``http_overhead.py`` measures requests/s, which on a shared 2-core machine moves
by tens of percent from run to run. This script counts instructions instead,
which load does not move. Each (framework, mode) runs in its own Python under
``valgrind --tool=callgrind``: the app of ``http_overhead.py`` (``none``,
``otel``, ``modeltrace``, plus ``modeltrace`` with feature capture off),
driven in-process by the framework's test client, with an SDK
``BatchSpanProcessor`` whose exporter encodes each batch with the OTLP
exporter's own protobuf encoder (what an OTLP exporter spends, minus the socket).
``--requests`` requests run between two markers, then a ``force_flush`` so the
encoding of their spans is counted too.

Under valgrind every request fits in modeltrace's default capture budget (50
rows/s), so the ``modeltrace`` row is the worst case: every request captured.

The test client runs in the measured process: the FastAPI ``TestClient``
(httpx, an anyio portal) costs several times the server's own work, so read
the FastAPI ratio as an upper bound of what a real client sees. The Flask
test client is cheap.

    python benchmarks/http_instructions.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from overhead_instructions import callgrind

MODES = ("none", "otel", "modeltrace", "modeltrace, capture off")


def run_inner(framework: str, mode: str, requests: int) -> None:
    """Inside valgrind: build the app, warm it up, run ``requests`` requests between markers."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class EncodingExporter(SpanExporter):
        encoded_bytes = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            EncodingExporter.encoded_bytes += len(encode_spans(spans).SerializeToString())
            return SpanExportResult.SUCCESS

    if mode == "modeltrace, capture off":
        os.environ["MODELTRACE_CAPTURE_FEATURES"] = "false"
    processor = BatchSpanProcessor(
        EncodingExporter(),
        max_queue_size=16384,
        max_export_batch_size=2048,
        schedule_delay_millis=3_600_000,
    )
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import http_overhead

    app_mode = "modeltrace" if mode.startswith("modeltrace") else mode
    body = json.dumps([http_overhead.ROW])
    if framework == "flask":
        client = http_overhead.flask_app(app_mode).test_client()

        def request() -> None:
            response = client.post(
                "/predict", data=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 200, response.status_code

    else:
        from fastapi.testclient import TestClient

        fastapi_client = TestClient(http_overhead.fastapi_app(app_mode))

        def request() -> None:
            response = fastapi_client.post(
                "/predict", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 200, response.status_code

    for _ in range(50):
        request()
    processor.force_flush()
    os.getppid()
    for _ in range(requests):
        request()
    processor.force_flush()
    os.getppid()
    print(json.dumps({"encoded_bytes": EncodingExporter.encoded_bytes}))


def count(framework: str, mode: str, requests: int) -> float:
    """Instructions per request of one (framework, mode), from a callgrind run."""
    script = os.path.abspath(__file__)
    _, totals = callgrind(script, ["--inner", framework, mode, f"--requests={requests}"])
    # dump 1: start-up and warm-up; dump 2: the measured requests and their export.
    if len(totals) < 2 or not totals[1]:
        raise RuntimeError(f"no totals in the callgrind dump of {framework}/{mode}")
    return totals[1] / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--inner", nargs=2, metavar=("FRAMEWORK", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=("flask", "fastapi"), action="append")
    args = parser.parse_args()
    if args.inner:
        run_inner(args.inner[0], args.inner[1], args.requests)
        return
    frameworks = args.framework or ["flask", "fastapi"]
    header = f"{'framework':10s} {'mode':26s} {'instructions/request':>21s}"
    print(f"{header}  ({args.requests} requests)")
    for framework in frameworks:
        per_request = {mode: count(framework, mode, args.requests) for mode in MODES}
        for mode, value in per_request.items():
            print(f"{framework:10s} {mode:26s} {value:21,.0f}")
        otel = per_request["otel"]
        for mode in ("modeltrace", "modeltrace, capture off"):
            ratio = otel / per_request[mode]
            flag = "ok" if ratio >= 0.9 else "MISSED"
            print(
                f"{framework:10s} throughput {mode} / plain OTel (= instructions otel / {mode}):"
                f" {ratio:.2f}  target 0.9  {flag}"
            )
            added = per_request[mode] - otel
            print(f"{framework:10s}   added by {mode}: {added:,.0f} instructions per request")


if __name__ == "__main__":
    main()
