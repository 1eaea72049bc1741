"""End to end: decorator -> OTLP exporters (HTTP, gRPC, via rotel) -> service -> report, Prometheus.

One ``modeltrace serve`` subprocess serves the module. Client processes run the
real ``@modeltrace.monitor`` decorator and the real OTLP exporters; the drift
report fetched over the API is checked against scipy's two-sample KS test on
the very rows the clients generated (regenerated here from the same seeds).
A real Prometheus scrapes ``/metrics`` and its query API must return the drift
gauges by model and feature. A real third-party collector (rotel) relays spans.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats

from modeltrace.drift.reference import Reference
from service_harness import ServiceProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("service_pipeline")]

CLIENT = str(Path(__file__).with_name("service_client.py"))
FEATURES = 3
ROWS = 8
SPANS = 100
REFERENCE_ROWS = 600


def _reference_data() -> np.ndarray:
    return np.random.default_rng(1234).normal(0.0, 1.0, size=(REFERENCE_ROWS, FEATURES))


def _client_rows(seed: int, shift: float, spans: int = SPANS) -> np.ndarray:
    """The rows service_client.py generates for these arguments, in order."""
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(shift, 1.0, size=(ROWS, FEATURES)) for _ in range(spans)])


def _send(out: Path, *args: str) -> list[dict[str, Any]]:
    base = [sys.executable, CLIENT, "--features", str(FEATURES), "--rows", str(ROWS)]
    subprocess.run([*base, "--out", str(out), *args], check=True, timeout=120)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _acked(lines: list[dict[str, Any]]) -> int:
    return sum(line.get("acked", 0) for line in lines)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("service_pipeline")
    with ServiceProcess(workdir, "--window", "1h", "--pane", "1m") as proc:
        reference = Reference.from_data(
            _reference_data(), feature_names=[f"x{i}" for i in range(FEATURES)]
        )
        with proc.client() as client:
            for model, version in (("churn", "1"), ("churn", "2"), ("relayed", "1")):
                response = client.put(
                    f"/api/v1/models/{model}/versions/{version}/reference",
                    json=reference.to_dict(),
                )
                assert response.status_code == 200, response.text
        yield proc


@pytest.fixture(scope="module")
def exported(service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Version 1 over OTLP/HTTP (gzip), version 2 (shifted) over OTLP/gRPC."""
    workdir = tmp_path_factory.mktemp("clients")
    http_lines = _send(
        workdir / "http.jsonl",
        "--endpoint", f"{service.url}/v1/traces", "--protocol", "http", "--gzip",
        "--model", "churn", "--version", "1", "--seed", "1", "--shift", "0",
        "--spans", str(SPANS), "--batch", "30",
    )  # fmt: skip
    grpc_lines = _send(
        workdir / "grpc.jsonl",
        "--endpoint", service.grpc_target, "--protocol", "grpc",
        "--model", "churn", "--version", "2", "--seed", "2", "--shift", "1.0",
        "--spans", str(SPANS), "--batch", "40",
    )  # fmt: skip
    return {"1": _acked(http_lines), "2": _acked(grpc_lines)}


def _versions(service: ServiceProcess, model: str) -> dict[str, dict[str, Any]]:
    with service.client() as client:
        models = client.get("/api/v1/models").json()
    entry = next(m for m in models if m["model"] == model)
    return {v["version"]: v for v in entry["versions"]}


def test_exporters_feed_the_expected_drift_report(
    service: ServiceProcess, exported: dict[str, int]
) -> None:
    assert exported == {"1": SPANS, "2": SPANS}
    versions = _versions(service, "churn")
    for version in ("1", "2"):
        assert versions[version]["spans"] == SPANS
        assert versions[version]["samples"] == SPANS * ROWS
        assert versions[version]["has_reference"] is True

    reference = _reference_data()
    with service.client() as client:
        reports = {
            version: client.get(f"/api/v1/models/churn/versions/{version}/drift").json()
            for version in ("1", "2")
        }
    for version, seed, shift in (("1", 1, 0.0), ("2", 2, 1.0)):
        report = reports[version]
        current = _client_rows(seed, shift)
        by_name = {f["name"]: f for f in report["features"]}
        for i in range(FEATURES):
            feature = by_name[f"x{i}"]
            assert feature["method"] == "ks"
            assert feature["n_current"] == SPANS * ROWS
            assert feature["n_reference"] == REFERENCE_ROWS
            expected = stats.ks_2samp(reference[:, i], current[:, i])
            assert feature["score"] == pytest.approx(expected.statistic, abs=1e-9)
            assert feature["p_value"] == pytest.approx(expected.pvalue, rel=0.05, abs=1e-12)
            assert feature["drifted"] is bool(expected.pvalue < feature["threshold"])
        if shift:
            assert report["dataset_drift"] is True and report["drift_share"] == 1.0
            exemplars = by_name["x0"]["exemplar_trace_ids"]
            assert exemplars and all(len(t) == 32 for t in exemplars)
        else:
            assert report["dataset_drift"] is False


def _prometheus_query(base: str, query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def test_prometheus_scrapes_the_drift_gauges(
    service: ServiceProcess, exported: dict[str, int], tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus is not None, "the Debian package prometheus is required (.ci/run)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: modeltrace\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{service.http_port}']\n"
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        query = 'ml_drift_score{ml_model_name="churn",ml_model_version="2"}'
        inputs = {f"x{i}" for i in range(FEATURES)}
        deadline = time.monotonic() + 60
        results: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                results = _prometheus_query(base, query)
            except httpx.HTTPError:
                results = []
            # Input features only: dataset-level entries have one series per method.
            results = [r for r in results if r["metric"]["ml_feature_name"] in inputs]
            if len(results) >= FEATURES:
                break
            time.sleep(0.5)
        # One series per (feature, method): a series of another method may linger.
        by_entry = {
            (r["metric"]["ml_feature_name"], r["metric"]["ml_drift_method"]): float(r["value"][1])
            for r in results
        }
        assert {name for name, _ in by_entry} == inputs
        with service.client() as client:
            report = client.get("/api/v1/models/churn/versions/2/drift").json()
        compared = 0
        for feature in report["features"]:
            key = (feature["name"], feature["method"])
            if feature["name"] in inputs:
                assert by_entry[key] == pytest.approx(feature["score"], rel=1e-9)
                compared += 1
        assert compared == FEATURES
        assert all(method == "ks" for _, method in by_entry)
        detected = _prometheus_query(base, 'ml_drift_detected{ml_model_name="churn"}')
        flags = {
            (r["metric"]["ml_model_version"], r["metric"]["ml_feature_name"]): r["value"][1]
            for r in detected
        }
        assert flags[("2", "x0")] == "1"
        share = _prometheus_query(base, 'ml_drift_share{ml_model_name="churn"}')
        assert {r["metric"]["ml_model_version"]: float(r["value"][1]) for r in share}["2"] == 1.0
        received = _prometheus_query(base, "sum(modeltrace_service_spans_received_total)")
        assert float(received[0]["value"][1]) >= 2 * SPANS
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_rotel_collector_hop_delivers_spans_intact(
    service: ServiceProcess, exported: dict[str, int], tmp_path: Path
) -> None:
    import rotel

    agent = Path(rotel.__file__).with_name("rotel-agent")
    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "rotel.log"
    with log.open("wb") as sink:
        relay = subprocess.Popen(
            [
                str(agent),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{grpc_port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{http_port}",
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                f"http://{service.grpc_target}",
                "--otlp-exporter-protocol",
                "grpc",
                "--batch-timeout",
                "200ms",
                "--pid-file",
                str(tmp_path / "rotel.pid"),
                "--log-file",
                str(tmp_path / "rotel-agent.log"),
            ],
            stdout=sink,
            stderr=sink,
            env={**os.environ, "ROTEL_ENVIRONMENT": "dev"},
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(f"http://127.0.0.1:{http_port}/v1/traces", timeout=1)
                break
            except httpx.HTTPError:
                assert relay.poll() is None, log.read_text()
                time.sleep(0.1)
        lines = _send(
            tmp_path / "relay.jsonl",
            "--endpoint",
            f"http://127.0.0.1:{http_port}/v1/traces",
            "--protocol",
            "http",
            "--model",
            "relayed",
            "--version",
            "1",
            "--seed",
            "7",
            "--shift",
            "0",
            "--spans",
            "60",
            "--batch",
            "20",
        )
        assert _acked(lines) == 60
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            versions = _versions(service, "relayed")
            if versions.get("1", {}).get("spans", 0) >= 60:
                break
            time.sleep(0.2)
        assert versions["1"]["spans"] == 60
        assert versions["1"]["samples"] == 60 * ROWS
        # Values intact through the hop: the report equals scipy on the sent rows.
        with service.client() as client:
            report = client.get("/api/v1/models/relayed/versions/1/drift").json()
        current = _client_rows(7, 0.0, spans=60)
        x1 = next(f for f in report["features"] if f["name"] == "x1")
        expected = stats.ks_2samp(_reference_data()[:, 1], current[:, 1])
        assert x1["score"] == pytest.approx(expected.statistic, abs=1e-9)
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(15)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait(5)
