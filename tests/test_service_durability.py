"""Durability and bounded memory of the service, as a subprocess killed with SIGKILL.

* Acknowledged exports survive ``kill -9``: after a restart on the same store
  the counts are exact.
* Under concurrent load from several client processes (OTLP/HTTP and gRPC
  exporters) with a ``kill -9`` in the middle: every acknowledged span is
  there after the restart; at most the batches in flight at the kill (not
  acknowledged, so retried by real clients) may be there in addition.
* A cardinality attack (thousands of model names, feature names and category
  values) is refused past the caps, reported as partial success, and the
  service's RSS (from /proc) stays flat.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from modeltrace import semconv
from modeltrace.drift.reference import Reference
from service_harness import ServiceProcess

pytestmark = pytest.mark.e2e

CLIENT = str(Path(__file__).with_name("service_client.py"))
PROTOBUF = {"Content-Type": "application/x-protobuf"}
ROWS = 8


def _client(out: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, CLIENT, "--rows", str(ROWS), "--features", "3", "--out", str(out), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _lines(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _count(lines: list[dict[str, Any]], key: str) -> int:
    return sum(int(line.get(key, 0)) for line in lines)


def _spans_stored(proc: ServiceProcess, model: str) -> dict[str, dict[str, Any]]:
    with proc.client() as client:
        models = client.get("/api/v1/models").json()
    for entry in models:
        if entry["model"] == model:
            return {v["version"]: v for v in entry["versions"]}
    return {}


def test_acknowledged_spans_survive_kill_9_exactly(tmp_path: Path) -> None:
    proc = ServiceProcess(tmp_path).start()
    try:
        out = tmp_path / "client.jsonl"
        first = _client(
            out,
            "--endpoint",
            f"{proc.url}/v1/traces",
            "--model",
            "durable",
            "--version",
            "1",
            "--spans",
            "150",
            "--batch",
            "25",
        )
        assert first.wait(120) == 0
        grpc_out = tmp_path / "grpc.jsonl"
        second = _client(
            grpc_out,
            "--endpoint",
            proc.grpc_target,
            "--protocol",
            "grpc",
            "--model",
            "durable",
            "--version",
            "1",
            "--spans",
            "70",
            "--batch",
            "35",
            "--seed",
            "3",
        )
        assert second.wait(120) == 0
        acked = _count(_lines(out), "acked") + _count(_lines(grpc_out), "acked")
        assert acked == 220
        proc.kill9()
        proc.restart()
        stored = _spans_stored(proc, "durable")["1"]
        assert stored["spans"] == 220
        assert stored["samples"] == 220 * ROWS
        # And again after a second crash, with the restored state checkpointed in between.
        time.sleep(2.5)
        proc.kill9()
        proc.restart()
        assert _spans_stored(proc, "durable")["1"]["spans"] == 220
    finally:
        proc.stop()


def test_kill_9_under_concurrent_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    proc = ServiceProcess(tmp_path).start()
    batch = 20
    outs = [tmp_path / f"client{i}.jsonl" for i in range(4)]
    clients: list[subprocess.Popen[bytes]] = []
    try:
        for i, out in enumerate(outs):
            endpoint = (
                ["--endpoint", proc.grpc_target, "--protocol", "grpc"]
                if i % 2
                else ["--endpoint", f"{proc.url}/v1/traces", "--protocol", "http"]
            )
            clients.append(
                _client(
                    out,
                    *endpoint,
                    "--model",
                    "loaded",
                    "--version",
                    "1",
                    "--seed",
                    str(i),
                    "--spans",
                    "400",
                    "--batch",
                    str(batch),
                    "--timeout",
                    "2",
                    "--stop-on-failure",
                )
            )
        deadline = time.monotonic() + 120
        while sum(_count(_lines(out), "acked") for out in outs) < 500:
            assert time.monotonic() < deadline, "clients made no progress"
            time.sleep(0.02)
        proc.kill9()
        for client in clients:
            assert client.wait(120) == 0
        acked = sum(_count(_lines(out), "acked") for out in outs)
        failed = sum(_count(_lines(out), "failed") for out in outs)
        unsent = sum(_count(_lines(out), "unsent") for out in outs)
        assert acked + failed + unsent == 4 * 400
        assert failed > 0, "the kill happened after all exports: nothing was tested"
        proc.restart()
        stored = _spans_stored(proc, "loaded")["1"]["spans"]
        # Every acknowledged span is there; beyond that only whole batches that were
        # committed but whose answer the kill cut off (at most one per client).
        assert acked <= stored <= acked + len(outs) * batch
        assert (stored - acked) % batch == 0
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        proc.stop()


_names = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def _attack_request(rng: np.random.Generator, spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for _ in range(spans):
        victim = rng.random() < 0.5
        model = "victim" if victim else _unique("model")
        span = scope.spans.add(
            name=semconv.PREDICT_SPAN_PREFIX + model,
            trace_id=rng.bytes(16),
            span_id=rng.bytes(8),
            start_time_unix_nano=now - 1000,
            end_time_unix_nano=now,
        )
        attributes = span.attributes
        attributes.add(key=semconv.MODEL_NAME).value.string_value = model
        version = "1" if victim else _unique("version")
        attributes.add(key=semconv.MODEL_VERSION).value.string_value = version
        attributes.add(key=semconv.FEATURE_PREFIX + "x0").value.double_value = rng.normal()
        # A new category and new feature names every time.
        attributes.add(key=semconv.FEATURE_PREFIX + "c0").value.string_value = _unique("category")
        for _ in range(10):
            attributes.add(key=semconv.FEATURE_PREFIX + _unique("f")).value.double_value = 1.0
    return request.SerializeToString()


def test_cardinality_attack_is_capped_reported_and_memory_stays_flat(tmp_path: Path) -> None:
    proc = ServiceProcess(tmp_path, "--grpc", "off", grpc=False).start()
    rng = np.random.default_rng(5)
    try:
        reference = Reference.from_data(
            {"x0": rng.normal(size=300), "c0": rng.choice(["a", "b", "c"], size=300)},
            categorical=["c0"],
        )
        with httpx.Client(base_url=proc.url, timeout=60) as client:
            put = client.put("/api/v1/models/victim/versions/1/reference", json=reference.to_dict())
            assert put.status_code == 200, put.text

            def attack(requests: int) -> int:
                rejected = 0
                for _ in range(requests):
                    response = client.post(
                        "/v1/traces", headers=PROTOBUF, content=_attack_request(rng, 100)
                    )
                    assert response.status_code == 200, response.text
                    answer = ExportTraceServiceResponse.FromString(response.content)
                    rejected += answer.partial_success.rejected_spans
                    if answer.partial_success.rejected_spans:
                        assert "model limit" in answer.partial_success.error_message
                return rejected

            attack(20)  # fill every cap, warm up allocators
            before = proc.rss_kib()
            rejected = attack(80)  # 8 000 more spans, each with 12 to 13 new names
            after = proc.rss_kib()
            assert rejected > 3000
            models = client.get("/api/v1/models").json()
            assert len(models) <= 101  # the model cap (100) plus the referenced victim
            victim = next(m for m in models if m["model"] == "victim")["versions"][0]
            assert victim["spans"] > 4000
            report = client.get("/api/v1/models/victim/versions/1/drift")
            assert report.status_code == 200
            # per-feature entries only for the referenced features (dataset-level
            # multivariate entries are named "__...__")
            names = {f["name"] for f in report.json()["features"]}
            assert {n for n in names if not n.startswith("__")} <= {"x0", "c0"}
            assert client.get("/healthz").status_code == 200
            metrics = client.get("/metrics").text
        rejected_metric = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("modeltrace_service_spans_rejected_total")
        )
        assert rejected_metric >= rejected
        growth_mib = (after - before) / 1024
        assert growth_mib < 40, f"RSS grew by {growth_mib:.1f} MiB under the attack"
    finally:
        proc.stop()
