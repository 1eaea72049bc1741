"""``modeltrace rca``: the ranking of findings and the command's errors and exit codes.

The analysis is fed what a real ``DriftAggregator`` answers for spans made by the
SDK with chosen start/end times (a calm previous hour, then a bad hour: one
feature shifted, slow calls, a new error type). The command's failure modes run
against real local servers: nothing listening (3), a server that is not the
modeltrace API (6), bad arguments (2).
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from modeltrace import semconv
from modeltrace.drift import DriftAggregator, Reference
from modeltrace.drift.rca import analyze, render_text, to_dict, trace_link
from modeltrace.drift.rca_client import Evidence
from service_harness import free_port

NOW = 1_800_000_000.0
FEATURES = ("income", "age", "score")


def _span(tracer: Any, end: float, seconds: float, row: np.ndarray, error: str | None) -> None:
    start_ns = int((end - seconds) * 1e9)
    span = tracer.start_span(semconv.PREDICT_SPAN_PREFIX + "credit", start_time=start_ns)
    span.set_attributes(
        {
            semconv.MODEL_NAME: "credit",
            semconv.MODEL_VERSION: "7",
            semconv.SAMPLE_RATE: 1.0,
            **{semconv.FEATURE_PREFIX + n: float(v) for n, v in zip(FEATURES, row, strict=True)},
        }
    )
    if error is not None:
        span.set_attribute(semconv.ERROR_TYPE, error)
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=int(end * 1e9))


def _incident_spans() -> list[ReadableSpan]:
    """Previous hour: 300 calls of ~5 ms, 1 KeyError. Last hour: 300 calls of ~300 ms,
    30 TimeoutErrors and the KeyError again, feature income shifted by 3 sd."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    rng = np.random.default_rng(11)
    for i in range(300):
        end = NOW - 3600.0 - 3000.0 + i * 10.0
        error = "KeyError" if i == 150 else None
        _span(tracer, end, 0.004 + 0.002 * rng.random(), rng.normal(size=3), error)
    for i in range(300):
        end = NOW - 3000.0 + i * 10.0
        row = rng.normal(size=3) + np.array([3.0, 0.0, 0.0])
        error = "TimeoutError" if i % 10 == 0 else ("KeyError" if i == 5 else None)
        _span(tracer, end, 0.2 + 0.2 * rng.random(), row, error)
    return list(exporter.get_finished_spans())


@pytest.fixture(scope="module")
def evidence() -> Iterator[Evidence]:
    spans = _incident_spans()
    with DriftAggregator(":memory:", pane_seconds=60.0, window_seconds=3600.0) as agg:
        reference = Reference.from_data(
            np.random.default_rng(5).normal(size=(800, 3)), feature_names=list(FEATURES)
        )
        agg.set_reference("credit", "7", reference)
        agg.ingest(spans)
        report = agg.evaluate("credit", "7").to_dict()
        yield Evidence(
            url="http://modeltrace.test:4318",
            model="credit",
            version="7",
            since_seconds=3600.0,
            versions=agg.models()[0]["versions"],
            drift=report,
            history=[report],
            calls=agg.call_summary("credit", "7", 3600.0, now=NOW),
        )


def test_findings_are_ranked_with_their_evidence(evidence: Evidence) -> None:
    analysis = analyze(evidence, now=NOW)
    kinds = [(f.kind, f.subject) for f in analysis.findings]
    # Failures up 10 points first (users see them), then the shifted feature, then latency.
    assert kinds[:3] == [
        ("errors", "TimeoutError"),
        ("feature_drift", "income"),
        ("latency", "p99"),
    ]
    assert not {("feature_drift", "age"), ("feature_drift", "score")} & set(kinds)
    impacts = [f.impact for f in analysis.findings]
    assert impacts == sorted(impacts, reverse=True)
    assert all(0.0 <= i <= 1.0 for i in impacts)

    drift = analysis.findings[1]
    window_ids = set(evidence.drift["features"][0]["exemplar_trace_ids"])  # type: ignore[index]
    assert drift.trace_ids and set(drift.trace_ids) <= window_ids | {
        t
        for f in evidence.drift["features"]
        for t in f["exemplar_trace_ids"]  # type: ignore[index]
    }
    assert "p-value" in drift.details[0] and "800 reference rows" in drift.details[0]

    errors = next(f for f in analysis.findings if f.kind == "errors")
    # 31 of 300 failed now (10.3%) against 1 of 300 (0.3%) before.
    assert "31 of 300 calls failed (10.3%)" in errors.summary
    assert "previous period 0.3%" in errors.summary
    assert errors.details == ["by type: TimeoutError 30 (new), KeyError 1 (previous 1)"]
    assert errors.impact == pytest.approx(0.95)

    latency = next(f for f in analysis.findings if f.kind == "latency")
    current = evidence.calls["current"]["latency_seconds"]  # type: ignore[index]
    previous = evidence.calls["previous"]["latency_seconds"]  # type: ignore[index]
    ratio = current["p99"] / previous["p99"]
    assert ratio > 8  # 0.4 s against ~6 ms
    assert f"x{ratio:.1f}" in latency.summary
    assert latency.impact == pytest.approx(0.85)
    slowest = [s["trace_id"] for s in evidence.calls["current"]["examples"]["slowest"]]  # type: ignore[index]
    assert latency.trace_ids == slowest
    assert any("no drift in age, score" in line for line in analysis.normal)


def test_text_and_json_render_trace_links(evidence: Evidence) -> None:
    analysis = analyze(evidence, now=NOW)
    template = "https://grafana.example/explore?traceId={trace_id}"
    text = render_text(analysis, template)
    first = analysis.findings[0]
    assert " 1. errors up: 31 of 300 calls failed" in text
    assert " 2. feature income drifted" in text
    assert f"traces: https://grafana.example/explore?traceId={first.trace_ids[0]}" in text
    assert "MODELTRACE_TRACE_URL" not in text
    bare = render_text(analysis, None)
    assert f"traces: {first.trace_ids[0]}" in bare or "MODELTRACE_TRACE_URL" in bare
    data = to_dict(analysis, template)
    assert data["findings"][0]["trace_links"] == [trace_link(t, template) for t in first.trace_ids]
    assert trace_link("abc", None) == "abc"


def test_calm_period_has_no_error_or_latency_finding(evidence: Evidence) -> None:
    calm = Evidence(
        url=evidence.url,
        model="credit",
        version="7",
        since_seconds=3600.0,
        versions=evidence.versions,
        drift=None,
        history=None,
        calls={
            "current": {**evidence.calls["previous"], "complete": True},  # type: ignore[index]
            "previous": evidence.calls["previous"],  # type: ignore[index]
        },
    )
    analysis = analyze(calm, now=NOW)
    assert analysis.findings == []
    assert any("not rising" in line for line in analysis.normal)
    assert any(line.startswith("latency p50") for line in analysis.normal)
    assert "No finding" in render_text(analysis)


# --- the command ----------------------------------------------------------------


def _rca(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeltrace.cli", "rca", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class _NotModeltrace(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>a web page</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_command_exit_codes_for_unreachable_and_foreign_services() -> None:
    nobody = _rca("--url", f"http://127.0.0.1:{free_port()}", "--model", "m")
    assert nobody.returncode == 3
    assert "cannot reach the modeltrace service" in nobody.stderr

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotModeltrace)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        foreign = _rca("--url", f"http://127.0.0.1:{server.server_address[1]}", "--model", "m")
    finally:
        server.shutdown()
        server.server_close()
    assert foreign.returncode == 6
    assert "did not answer JSON" in foreign.stderr


def test_command_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modeltrace.cli import main

    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    for args, message in (
        (["--since", "soon"], "invalid duration"),
        (["--token-file", str(empty)], "is empty"),
        (["--token-file", str(tmp_path / "missing")], "--token-file"),
        (["--trace-url", "http://jaeger/trace"], "{trace_id}"),
    ):
        code = main(["rca", "--url", "http://127.0.0.1:1", "--model", "m", *args])
        assert code == 2, args
        assert message in capsys.readouterr().err
    assert main(["rca", "--url", "ftp://example", "--model", "m"]) == 2
    assert "http(s) URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["rca", "--url", "http://127.0.0.1:1"])
    assert exited.value.code == 2 and "--model" in capsys.readouterr().err


def test_help_documents_exit_codes() -> None:
    shown = _rca("--help")
    assert shown.returncode == 0
    for text in ("--url", "--model", "--version", "--since", "--token-file", "exit codes:"):
        assert text in shown.stdout
    for code in ("0", "2", "3", "4", "5", "6"):
        assert f"\n  {code}  " in shown.stdout
