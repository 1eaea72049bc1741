"""Delayed labels, performance, SLOs and the HTML report over real HTTP against
``modeltrace serve`` (a subprocess with an auth token), including ``kill -9`` after
an acknowledged label upload and a headless Chromium rendering of a served page."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from drift_spans import otlp_request
from modeltrace import semconv
from modeltrace.drift import Reference
from service_harness import ServiceProcess
from test_html import _page_requests, _png_pixels, _ProxiedChromium

pytestmark = pytest.mark.e2e

MODEL, VERSION = "churn", "7"
API = f"/api/v1/models/{MODEL}/versions/{VERSION}"
PAGE = f"/models/{MODEL}/versions/{VERSION}"
TOKEN = "perf-token"
N = 200


def _data(seed: int, n: int, shift: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    positive = 1 / (1 + np.exp(-2.0 * x))
    pred = (positive >= 0.5).astype(float)
    return {
        "x": x,
        "pred": pred,
        "top": np.maximum(positive, 1 - positive),
        "truth": (rng.random(n) < positive).astype(float),
    }


def _predictions(data: dict[str, np.ndarray]) -> bytes:
    spans = []
    for i in range(len(data["x"])):
        spans.append(
            (
                semconv.PREDICT_SPAN_PREFIX + MODEL,
                {
                    semconv.MODEL_NAME: MODEL,
                    semconv.MODEL_VERSION: VERSION,
                    semconv.PREDICTION_ID: f"q{i}",
                    semconv.SAMPLE_RATE: 1.0,
                    semconv.FEATURE_PREFIX + "x": float(data["x"][i]),
                    semconv.PREDICTION_VALUE: float(data["pred"][i]),
                    semconv.PREDICTION_SCORE: float(data["top"][i]),
                },
            )
        )
    return otlp_request(spans, end_ns=int(time.time() * 1e9)).SerializeToString()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("service_performance")
    env = {"MODELTRACE_TRACE_URL": "https://traces.example.com/trace/{trace_id}"}
    with ServiceProcess(
        workdir, "--max-body-size", "256KiB", grpc=False, token=TOKEN, env=env
    ) as proc:
        yield proc


def _matched_accuracy(data: dict[str, np.ndarray], labelled: list[int]) -> float:
    return float(np.mean(data["truth"][labelled] == data["pred"][labelled]))


def test_labels_performance_slo_html_and_kill_9(service: ServiceProcess, tmp_path: Path) -> None:
    ref = _data(1, 3000, 0.0)
    reference = Reference.from_data(
        {"x": ref["x"]},
        predictions=ref["pred"],
        targets=ref["truth"],
        scores=ref["top"],
        categorical={"__prediction__": True},
        labelled_sample_size=1000,
    )
    prod = _data(2, N, 1.5)  # x moved: the drifted feature of the page
    with service.client() as client:
        put = client.put(
            f"{API}/reference",
            content=reference.to_json(),
            headers={"Content-Type": "application/json"},
        )
        assert put.status_code == 200, put.text
        sent = client.post(
            "/v1/traces",
            content=_predictions(prod),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert sent.status_code == 200, sent.text

        # JSON upload: rows 0..99, one unknown id, one repeated label
        entries = [{"prediction_id": f"q{i}", "label": int(prod["truth"][i])} for i in range(100)]
        entries.append({"prediction_id": "q0", "row": 0, "label": int(prod["truth"][0])})
        entries.append({"prediction_id": "not-yet", "label": 1})
        answer = client.post(f"{API}/labels", json={"labels": entries})
        assert answer.status_code == 200, answer.text
        counts = answer.json()
        assert (counts["accepted"], counts["matched"], counts["pending"]) == (101, 100, 1)
        assert counts["duplicates"] == 1
        # CSV upload: rows 100..149, any column order, row column given
        csv_body = "label,row,prediction_id\n" + "".join(
            f"{int(prod['truth'][i])},0,q{i}\n" for i in range(100, 150)
        )
        answer = client.post(
            f"{API}/labels", content=csv_body, headers={"Content-Type": "text/csv"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["matched"] == 50

        # bad uploads: precise 400s, 413, 415
        bad = client.post(
            f"{API}/labels",
            json={
                "labels": [
                    {"prediction_id": "a", "label": 1},
                    {"prediction_id": "b", "row": "x", "label": 1},
                ]
            },
        )
        assert bad.status_code == 400 and "labels[1]: row must be an integer" in bad.json()["error"]
        bad = client.post(
            f"{API}/labels",
            content="prediction_id,label\nq1,1\nq2\n",
            headers={"Content-Type": "text/csv"},
        )
        assert bad.status_code == 400 and "line 3: expected 2 fields" in bad.json()["error"]
        bad = client.post(f"{API}/labels", content="q1 1", headers={"Content-Type": "text/plain"})
        assert bad.status_code == 415
        big = "prediction_id,label\n" + "a-long-prediction-id-0123456789,1\n" * 10_000
        bad = client.post(f"{API}/labels", content=big, headers={"Content-Type": "text/csv"})
        assert bad.status_code == 413

        # SLOs through the API, then the performance of the window
        slo = client.put(f"{API}/slo", json={"thresholds": {"accuracy": 0.99, "f1_macro": 0.1}})
        assert slo.status_code == 200, slo.text
        assert client.put(f"{API}/slo", json={"thresholds": {"acc": 1}}).status_code == 400
        perf = client.get(f"{API}/performance")
        assert perf.status_code == 200, perf.text
        body = perf.json()
        labelled = list(range(150))
        assert body["realized"]["accuracy"] == pytest.approx(_matched_accuracy(prod, labelled))
        assert body["label_coverage"] == pytest.approx(150 / N)
        assert body["labels"]["matched"] == 150 and body["labels"]["pending"] == 1
        assert body["labels"]["duplicates"] == 1
        assert body["slo"]["accuracy"]["breached"] is True
        assert body["slo"]["f1_macro"]["breached"] is False
        assert body["estimated"]["kind"] == "estimated" and body["estimated"]["calibrated"]
        assert client.get("/api/v1/models/nope/versions/1/performance").status_code == 404

        # the visual report, behind the token
        unauthenticated = httpx.get(f"{service.url}{PAGE}", timeout=30)
        assert unauthenticated.status_code == 401
        assert httpx.get(f"{service.url}/", timeout=30).status_code == 401
        index = client.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert f'href="models/{MODEL}/versions/{VERSION}"' in index.text
        page = client.get(PAGE)
        assert page.status_code == 200
        assert "Performance over time" in page.text
        assert '<tr class="drifted"><td><code><a href="#' in page.text
        assert "https://traces.example.com/trace/" in page.text
        assert client.get("/models/nope/versions/1").status_code == 404

    # kill -9 right after an acknowledged upload: the labels are still there
    with service.client() as client:
        late = [{"prediction_id": f"q{i}", "label": int(prod["truth"][i])} for i in range(150, N)]
        assert client.post(f"{API}/labels", json={"labels": late}).status_code == 200
    service.kill9()
    service.restart()
    with service.client() as client:
        body = client.get(f"{API}/performance").json()
    assert body["labels"]["matched"] == N
    assert body["label_coverage"] == pytest.approx(1.0)
    assert body["realized"]["accuracy"] == pytest.approx(_matched_accuracy(prod, list(range(N))))
    _render_in_chromium(page.text, tmp_path)


def _render_in_chromium(html: str, tmp_path: Path) -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed: apt-get install -y chromium (see .ci/run)"
    page = tmp_path / "served.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "served.png"
    run = _ProxiedChromium(chromium, page, tmp_path / "profile", shot)
    stderr = run.wait()
    assert shot.exists(), stderr[-2000:]
    assert _page_requests(run.seen) == []
    rgb = _png_pixels(shot.read_bytes())[..., :3].reshape(-1, 3)
    assert np.unique(rgb, axis=0).shape[0] > 50
    orange = np.array([0xE0, 0x7B, 0x24])  # the current-window bars of the histograms
    assert np.any(np.all(np.abs(rgb.astype(int) - orange) <= 2, axis=1))
