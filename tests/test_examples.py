"""Every file in examples/ runs here against a real OTLP receiver, so examples cannot rot.

Also the production-server story: gunicorn pre-fork with 2 workers, with and
without ``--preload``, each worker exporting its own spans.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
import requests

from integration_support import (
    EXAMPLES,
    PYTHON,
    free_port,
    subprocess_env,
    wait_until_serving,
)
from modeltrace import semconv
from otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e

COVERED = {
    "decorator_basic.py",
    "wrap_estimator.py",
    "flask_app.py",
    "fastapi_app.py",
    "zero_code/app.py",  # run under opentelemetry-instrument in test_integrations_sklearn.py
    "zero_code/README.md",
}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def test_every_example_is_covered() -> None:
    files = {
        str(path.relative_to(EXAMPLES))
        for path in EXAMPLES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert files == COVERED


def _run_script(name: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PYTHON, str(EXAMPLES / name)],
        env=subprocess_env(endpoint, MODELTRACE_SAMPLE_RATE="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_decorator_basic(receiver: OtlpReceiver) -> None:
    done = _run_script("decorator_basic.py", receiver.endpoint)
    assert done.stdout.startswith("predicted 80 rows")
    spans = receiver.wait_for_spans(lambda s: len(s) >= 20)
    assert len(spans) == 20
    for span in spans:
        assert span.name == "predict churn"
        assert span.attributes[semconv.MODEL_VERSION] == "3"
        assert span.attributes[semconv.BATCH_SIZE] == 4
        assert len(span.attributes["ml.feature.tenure_months"]) == 4
    assert semconv.METRIC_PREDICT_DURATION in receiver.metric_names()


def test_wrap_estimator(receiver: OtlpReceiver) -> None:
    done = _run_script("wrap_estimator.py", receiver.endpoint)
    assert done.stdout.startswith("classes [1, 0]")
    spans = receiver.wait_for_spans(lambda s: len(s) >= 3)
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    operations = sorted(s.attributes[semconv.MODEL_OPERATION] for s in by_name["predict churn"])
    assert operations == ["predict", "predict"]  # predict, then the monitored scored()
    (label,) = by_name["label churn"]
    prediction_ids = {s.attributes[semconv.PREDICTION_ID] for s in by_name["predict churn"]}
    assert label.attributes[semconv.PREDICTION_ID] in prediction_ids
    scored = next(s for s in by_name["predict churn"] if semconv.PREDICTION_SCORE in s.attributes)
    assert scored.attributes["ml.feature.monthly_charges"] == [110.0, 25.0]


def _start_server(command: list[str], endpoint: str, port: int, **env: str) -> subprocess.Popen:
    process = subprocess.Popen(
        command,
        env=subprocess_env(endpoint, MODELTRACE_SAMPLE_RATE="1", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until_serving(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _server_and_model(spans: list[ReceivedSpan], route: str) -> tuple[ReceivedSpan, ReceivedSpan]:
    (model,) = [
        s
        for s in spans
        if s.name == "predict churn" and s.attributes[semconv.MODEL_OPERATION] == "predict"
    ]
    (server,) = [s for s in spans if s.kind == "SERVER" and s.span_id == model.parent_span_id]
    assert server.name == route
    return server, model


def test_flask_app(receiver: OtlpReceiver) -> None:
    port = free_port()
    process = _start_server(
        [PYTHON, str(EXAMPLES / "flask_app.py"), str(port)],
        receiver.endpoint,
        port,
        OTEL_PYTHON_FLASK_EXCLUDED_URLS="healthz",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        ok = requests.post(f"{base}/predict", json=[{"tenure_months": 3, "monthly_charges": 99}])
        bad = requests.post(f"{base}/predict", json=[{"tenure_months": "x"}])
        assert ok.status_code == 200 and ok.json()["churn"] == [1]
        assert bad.status_code == 400
        spans = receiver.wait_for_spans(lambda s: len(s) >= 3)
    finally:
        _stop(process)
    server, model = _server_and_model(spans, "POST /predict")
    assert model.parent_span_id == server.span_id
    assert server.attributes[semconv.MODEL_NAME] == "churn"
    assert server.attributes[semconv.MODEL_VERSION] == "3"
    assert model.attributes["ml.feature.monthly_charges"] == 99.0
    statuses = sorted(s.attributes["http.status_code"] for s in spans if s.kind == "SERVER")
    assert statuses == [200, 400]
    assert not [s for s in spans if "healthz" in s.name]


def test_fastapi_app(receiver: OtlpReceiver) -> None:
    port = free_port()
    process = _start_server(
        [PYTHON, str(EXAMPLES / "fastapi_app.py"), str(port)],
        receiver.endpoint,
        port,
        OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="healthz",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        body = {"tenure_months": 3, "monthly_charges": 99, "plan": "pro"}
        ok = requests.post(f"{base}/predict", json=body)
        invalid = requests.post(f"{base}/predict", json={"tenure_months": -1})
        batch = requests.post(f"{base}/predict/batch", json=[body, body])
        assert ok.status_code == 200 and ok.json()["churn"] == 1
        assert invalid.status_code == 422
        assert batch.json() == [1, 1]
        spans = receiver.wait_for_spans(
            lambda s: (
                len([x for x in s if x.name.startswith("predict ")]) >= 2
                and len([x for x in s if x.kind == "SERVER"]) >= 3
            )
        )
    finally:
        _stop(process)
    server, model = _server_and_model(spans, "POST /predict")
    assert model.parent_span_id == server.span_id
    assert model.attributes["ml.feature.plan"] == "pro"
    assert model.attributes["ml.feature.tenure_months"] == 3.0
    assert server.attributes[semconv.MODEL_VERSION] == "3"
    batch_span = next(
        s for s in spans if s.attributes.get(semconv.MODEL_OPERATION) == "predict_batch"
    )
    assert batch_span.attributes[semconv.BATCH_SIZE] == 2
    assert not [s for s in spans if "healthz" in s.name]


def _spans_from_two_workers(
    receiver: OtlpReceiver, command: list[str], port: int, body: object, **env: str
) -> list[ReceivedSpan]:
    """Serve with ``command`` (two workers), post until both workers answered, and
    return the spans once server spans from both workers arrived. Each server span
    has its model span as child, from the same worker."""
    process = _start_server(command, receiver.endpoint, port, **env)
    pids: set[int] = set()
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            # A new connection per request, so the kernel spreads them over workers.
            answer = requests.post(
                f"{base}/predict", json=body, headers={"Connection": "close"}, timeout=10
            )
            assert answer.status_code == 200, answer.text
            pids.add(answer.json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "requests never reached both workers"
        spans = receiver.wait_for_spans(
            lambda s: len({x.resource["service.instance.id"] for x in s if x.kind == "SERVER"}) == 2
        )
    finally:
        _stop(process)
    for server in (s for s in spans if s.kind == "SERVER"):
        (model,) = [s for s in spans if s.name == "predict churn" and s.trace_id == server.trace_id]
        assert model.parent_span_id == server.span_id
        assert model.resource["service.instance.id"] == server.resource["service.instance.id"]
        assert server.attributes[semconv.MODEL_NAME] == "churn"
    return spans


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_gunicorn_two_workers_each_export(receiver: OtlpReceiver, preload: bool) -> None:
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(EXAMPLES),
        *(["--preload"] if preload else []),
        "flask_app:app",
    ]
    row = [{"tenure_months": 40, "monthly_charges": 30}]
    _spans_from_two_workers(receiver, command, port, row, OTEL_PYTHON_FLASK_EXCLUDED_URLS="healthz")


def test_uvicorn_two_workers_each_export(receiver: OtlpReceiver) -> None:
    # uvicorn starts its workers as fresh processes: each configures its own providers.
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        "--app-dir",
        str(EXAMPLES),
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "fastapi_app:app",
    ]
    body = {"tenure_months": 40, "monthly_charges": 30, "plan": "pro"}
    spans = _spans_from_two_workers(
        receiver, command, port, body, OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="healthz"
    )
    models = [s for s in spans if s.name == "predict churn"]
    assert models and all(s.attributes["ml.feature.plan"] == "pro" for s in models)
