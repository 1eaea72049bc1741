"""End to end on 127.0.0.1: app -> rotel collector -> modeltrace serve -> Prometheus alert -> rca.

* The app (``tests/alerting_app.py``, a separate process) uses ``modeltrace.configure``
  and ``@modeltrace.monitor`` with the OTLP/HTTP exporter; its feature ``amount`` is
  shifted by 2.5 standard deviations and every 10th call raises ``TimeoutError``. It
  prints the trace id of every call it made.
* A real third-party collector (rotel) receives the app's OTLP/HTTP and relays it
  over OTLP/gRPC, with the service's bearer token as a header, to ``modeltrace serve``.
* A real Prometheus scrapes the service's /metrics every second (with the token) and
  evaluates ``collector/prometheus/alerts.yaml`` + ``recording_rules.yaml``, copied
  with every ``for:`` shortened to 2 s: ``ModelFeatureDrift`` must reach ``firing``
  for ``amount`` only, and the aggregator must not be reported down.
* ``modeltrace rca`` (a subprocess) must name ``amount`` as drifted and the
  ``TimeoutError`` failures, each with a trace link built from
  ``MODELTRACE_TRACE_URL`` around a trace id the app really produced.
"""

from __future__ import annotations

import json
import os
import re
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

from modeltrace.drift.reference import Reference
from service_harness import ServiceProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_alerting")]

ROOT = Path(__file__).resolve().parent.parent
APP = str(Path(__file__).with_name("alerting_app.py"))
RULES = ROOT / "collector" / "prometheus"
TOKEN = "e2e-alerting-token"
MODEL, VERSION = "fraud", "2"
FEATURES = ("amount", "age", "tenure")
TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"
CALLS = 60


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not up in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def shortened_rules(workdir: Path) -> list[Path]:
    """Copies of the shipped rule files with every ``for:`` at 2 s (else unchanged)."""
    out = []
    for name in ("recording_rules.yaml", "alerts.yaml"):
        text = (RULES / name).read_text()
        shortened, count = re.subn(r"(?m)^(\s+for:\s*)\S+\s*$", r"\g<1>2s", text)
        assert count > 0 or name != "alerts.yaml"
        target = workdir / name
        target.write_text(shortened)
        out.append(target)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("e2e_alerting")
    token_file = workdir / "token"
    token_file.write_text(TOKEN + "\n")
    processes: list[subprocess.Popen[bytes]] = []
    service = ServiceProcess(workdir, "--window", "1h", "--pane", "1m", token=TOKEN)
    try:
        prometheus = shutil.which("prometheus")
        assert prometheus is not None, "the Debian package prometheus is required (.ci/run)"
        service.start()
        prom_port = free_port()
        rule_files = shortened_rules(workdir)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: {json.dumps([str(p) for p in rule_files])}\n"
            "scrape_configs:\n  - job_name: modeltrace\n    metrics_path: /metrics\n"
            f"    authorization:\n      type: Bearer\n      credentials_file: {token_file}\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{service.http_port}']\n"
        )
        prom_log = workdir / "prometheus.log"
        with prom_log.open("wb") as sink:
            processes.append(
                subprocess.Popen(
                    [
                        prometheus,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={workdir / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=sink,
                    stderr=sink,
                )
            )
        import rotel

        agent = Path(rotel.__file__).with_name("rotel-agent")
        rotel_http = free_port()
        rotel_log = workdir / "rotel.log"
        with rotel_log.open("wb") as sink:
            processes.append(
                subprocess.Popen(
                    [
                        str(agent), "start",
                        "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}",
                        "--otlp-http-endpoint", f"127.0.0.1:{rotel_http}",
                        "--exporter", "otlp",
                        "--otlp-exporter-endpoint", f"http://{service.grpc_target}",
                        "--otlp-exporter-protocol", "grpc",
                        "--otlp-exporter-custom-headers", f"authorization=Bearer {TOKEN}",
                        "--batch-timeout", "200ms",
                        "--pid-file", str(workdir / "rotel.pid"),
                        "--log-file", str(workdir / "rotel-agent.log"),
                    ],
                    stdout=sink,
                    stderr=sink,
                    env={**os.environ, "ROTEL_ENVIRONMENT": "dev"},
                )
            )  # fmt: skip
        reference = Reference.from_data(
            np.random.default_rng(99).normal(0.0, 1.0, size=(600, len(FEATURES))),
            feature_names=list(FEATURES),
        )
        with service.client() as client:
            answer = client.put(
                f"/api/v1/models/{MODEL}/versions/{VERSION}/reference", json=reference.to_dict()
            )
            assert answer.status_code == 200, answer.text
        _wait_http(f"http://127.0.0.1:{rotel_http}/v1/traces", processes[1], rotel_log)
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", processes[0], prom_log)
        yield {
            "service": service,
            "prometheus": f"http://127.0.0.1:{prom_port}",
            "collector": f"http://127.0.0.1:{rotel_http}",
            "token_file": token_file,
            "workdir": workdir,
        }
    finally:
        for proc in reversed(processes):
            _stop(proc)
        service.stop()


@pytest.fixture(scope="module")
def produced(stack: dict[str, Any]) -> dict[str, Any]:
    """Run the app through the collector; wait until the service holds every call."""
    result = subprocess.run(
        [
            sys.executable, APP, "--endpoint", stack["collector"], "--calls", str(CALLS),
            "--seed", "3", "--drift-feature", "amount", "--shift", "2.5", "--fail-every", "10",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = lines[-1]
    assert summary == {"flushed": True, "calls": CALLS}
    calls = lines[:-1]
    service: ServiceProcess = stack["service"]
    deadline = time.monotonic() + 30
    spans = 0
    while time.monotonic() < deadline:
        with service.client() as client:
            models = client.get("/api/v1/models").json()
        entry = next((m for m in models if m["model"] == MODEL), None)
        versions = {v["version"]: v for v in entry["versions"]} if entry else {}
        spans = versions.get(VERSION, {}).get("spans", 0)
        if spans >= CALLS:
            break
        time.sleep(0.2)
    assert spans == CALLS
    return {
        "all": {c["trace_id"] for c in calls},
        "failed": {c["trace_id"] for c in calls if c["failed"]},
    }


def _alerts(base: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/alerts", timeout=5)
    answer.raise_for_status()
    return list(answer.json()["data"]["alerts"])


def test_feature_drift_alert_fires_in_prometheus(
    stack: dict[str, Any], produced: dict[str, Any]
) -> None:
    base = stack["prometheus"]
    deadline = time.monotonic() + 30
    drift: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        drift = [a for a in _alerts(base) if a["labels"]["alertname"] == "ModelFeatureDrift"]
        if any(a["state"] == "firing" for a in drift):
            break
        time.sleep(0.5)
    firing = [a for a in drift if a["state"] == "firing"]
    assert [a["labels"]["ml_feature_name"] for a in firing] == ["amount"], drift
    (alert,) = firing
    assert alert["labels"]["ml_model_name"] == MODEL
    assert alert["labels"]["ml_model_version"] == VERSION
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["ml_drift_method"] == "ks"
    assert "amount drifted" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"].endswith("model-feature-drift.md")
    # The alert's value is the drift score the service reports.
    with stack["service"].client() as client:
        report = client.get(f"/api/v1/models/{MODEL}/versions/{VERSION}/drift").json()
    amount = next(f for f in report["features"] if f["name"] == "amount")
    assert float(alert["value"]) == pytest.approx(amount["score"], rel=1e-6)
    # Nothing else is wrong with the drift pipeline: the aggregator is scraped (with the token).
    states = {a["labels"]["alertname"] for a in _alerts(base) if a["state"] == "firing"}
    assert "ModeltraceAggregatorDown" not in states
    assert "ModelDriftEvaluationStale" not in states


def _rca(stack: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "modeltrace.cli", "rca",
            "--url", stack["service"].url, "--model", MODEL, "--since", "1h",
            "--token-file", str(stack["token_file"]), *extra,
        ],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MODELTRACE_TRACE_URL": TRACE_URL},
    )  # fmt: skip


def test_rca_names_the_drifted_feature_with_real_traces(
    stack: dict[str, Any], produced: dict[str, Any]
) -> None:
    result = _rca(stack, "--format", "json")
    assert result.returncode == 0, result.stderr
    analysis = json.loads(result.stdout)
    assert (analysis["model"], analysis["version"]) == (MODEL, VERSION)
    by_subject = {(f["kind"], f["subject"]): f for f in analysis["findings"]}
    drift = by_subject[("feature_drift", "amount")]
    assert not {("feature_drift", "age"), ("feature_drift", "tenure")} & set(by_subject)
    assert drift["trace_ids"] and set(drift["trace_ids"]) <= produced["all"]
    assert drift["trace_links"] == [TRACE_URL.format(trace_id=t) for t in drift["trace_ids"]]
    errors = by_subject[("errors", "TimeoutError")]
    assert f"{CALLS // 10} of {CALLS} calls failed" in errors["summary"]
    assert errors["trace_ids"] and set(errors["trace_ids"]) <= produced["failed"]

    text = _rca(stack)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if "feature amount drifted" in line)
    links = [line for line in lines[heading:] if "jaeger.example" in line]
    trace_id = links[0].rsplit("/", 1)[-1]
    assert trace_id in produced["all"]
    assert any("TimeoutError" in line for line in lines)


def test_rca_exit_codes_against_the_running_stack(
    stack: dict[str, Any], produced: dict[str, Any]
) -> None:
    unknown = _rca(stack, "--version", "9")
    assert unknown.returncode == 5 and "no version '9'" in unknown.stderr
    wrong = stack["workdir"] / "wrong-token"
    wrong.write_text("not-the-token\n")
    refused = subprocess.run(
        [
            sys.executable, "-m", "modeltrace.cli", "rca", "--url", stack["service"].url,
            "--model", MODEL, "--token-file", str(wrong),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 4 and "401" in refused.stderr
