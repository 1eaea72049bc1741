"""Load benchmark of ``modeltrace serve``: several client processes exporting OTLP/HTTP protobuf.

Starts the service on free 127.0.0.1 ports with a store in a temporary
directory, uploads a reference, then runs ``--clients`` processes for
``--seconds``. Each client exports ExportTraceServiceRequests of ``--batch``
prediction spans (``--features`` features x ``--rows`` rows each, made by the
real ``@modeltrace.monitor`` decorator and encoded with the OTLP exporter's own
encoder) over HTTP/1.1 keep-alive, honouring 429/503 with Retry-After as OTLP
exporters do. Reported: acknowledged spans/s, export latency p50/p99, the
service's RSS over time, rejected spans and lost spans (acknowledged minus
counted by the service after the run: must be 0).

    python benchmarks/service_load.py --clients 3 --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_SECONDS = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_request(model: str, spans: int, features: int, rows: int, seed: int) -> bytes:
    """One serialized request made by the real decorator and the OTLP exporter's encoder."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import modeltrace

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    names = [f"x{i}" for i in range(features)]

    @modeltrace.monitor(model=model, version="1", feature_names=names, sample_rate=1.0)
    def predict(batch: np.ndarray) -> np.ndarray:
        return batch.sum(axis=1)

    rng = np.random.default_rng(seed)
    for _ in range(spans):
        predict(rng.normal(size=(rows, features)))
    return bytes(encode_spans(memory.get_finished_spans()).SerializeToString())


def client(
    port: int, body: bytes, spans: int, seconds: float, start_at: float, result: Any
) -> None:
    """Export ``body`` in a loop; put (acked spans, rejected spans, retries, latencies,
    CPU seconds of this client during the load)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/x-protobuf"}
    acked = rejected = retries = 0
    latencies: list[float] = []
    while time.time() < start_at:
        time.sleep(0.001)
    cpu_started = time.process_time()
    end = start_at + seconds
    while time.time() < end:
        began = time.perf_counter()
        connection.request("POST", "/v1/traces", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status == 200:
            latencies.append(time.perf_counter() - began)
            answer = ExportTraceServiceResponse.FromString(payload)
            acked += spans
            rejected += answer.partial_success.rejected_spans
        elif response.status in (429, 503):
            retries += 1
            time.sleep(float(response.getheader("Retry-After", "1")))
        else:
            raise RuntimeError(f"export failed: {response.status} {payload[:200]!r}")
    cpu = time.process_time() - cpu_started
    connection.close()
    result.put((acked, rejected, retries, latencies, cpu))


def counted_spans(port: int, model: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/api/v1/models")
    models = json.loads(connection.getresponse().read())
    connection.close()
    return sum(v["spans"] for m in models if m["model"] == model for v in m["versions"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=3, help="client processes")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the load")
    parser.add_argument("--batch", type=int, default=512, help="spans per export request")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    model = "bench"
    workdir = Path(tempfile.mkdtemp(prefix="modeltrace-bench-"))
    port = free_port()
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modeltrace.cli",
            "serve",
            "--store",
            str(workdir / "bench.db"),
            "--http",
            f"127.0.0.1:{port}",
            "--grpc",
            "off",
            "--log-level",
            "warning",
        ],
        stderr=open(workdir / "service.log", "wb"),  # noqa: SIM115
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("service did not start")
            time.sleep(0.1)

        from modeltrace.drift.reference import Reference

        reference = Reference.from_data(
            np.random.default_rng(0).normal(size=(2000, args.features)),
            feature_names=[f"x{i}" for i in range(args.features)],
        )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(
            "PUT",
            f"/api/v1/models/{model}/versions/1/reference",
            body=json.dumps(reference.to_dict()),
            headers={"Content-Type": "application/json"},
        )
        assert connection.getresponse().status == 200
        body = build_request(model, args.batch, args.features, args.rows, seed=1)

        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        start_at = time.time() + 3.0
        workers = [
            ctx.Process(target=client, args=(port, body, args.batch, args.seconds, start_at, queue))
            for _ in range(args.clients)
        ]
        for worker in workers:
            worker.start()
        rss: list[tuple[float, float]] = []
        while time.time() < start_at:
            time.sleep(0.01)
        service_cpu = cpu_seconds(service.pid)
        while time.time() < start_at + args.seconds + 1:
            rss.append((round(time.time() - start_at, 1), rss_mib(service.pid)))
            time.sleep(SAMPLE_SECONDS)
        service_cpu = cpu_seconds(service.pid) - service_cpu
        results = [queue.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(30)
        acked = sum(r[0] for r in results)
        rejected = sum(r[1] for r in results)
        retries = sum(r[2] for r in results)
        latencies = np.array([x for r in results for x in r[3]])
        counted = counted_spans(port, model)
        report = {
            "clients": args.clients,
            "seconds": args.seconds,
            "spans_per_request": args.batch,
            "features": args.features,
            "rows": args.rows,
            "request_bytes": len(body),
            "acked_spans": acked,
            "acked_spans_per_second": round(acked / args.seconds),
            "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "latency_p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
            "retries_429_503": retries,
            "rejected_spans": rejected,
            "lost_spans": acked - counted,
            # CPU the service used per acknowledged span (load-independent, unlike
            # spans/s on a shared machine), its share of one core, and the clients'.
            "service_cpu_us_per_span": round(service_cpu / max(acked, 1) * 1e6, 1),
            "service_cpu_percent_of_one_core": round(100 * service_cpu / (args.seconds + 1)),
            "clients_cpu_percent_of_one_core": round(
                100 * sum(r[4] for r in results) / args.seconds
            ),
            "rss_mib_min": round(min(r for _, r in rss[2:] or rss), 1),
            "rss_mib_max": round(max(r for _, r in rss), 1),
            "rss_mib_over_time": rss[:: max(1, len(rss) // 10)],
        }
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(60)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if report["lost_spans"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("MODELTRACE_SAMPLE_RATE", "1")
    sys.exit(main())
