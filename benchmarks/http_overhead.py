"""HTTP overhead of modeltrace: requests/second of a Flask and a FastAPI model server.

For each framework, one run measures three servers built like
``examples/flask_app.py`` / ``examples/fastapi_app.py`` around a trivial model
(a sum of the features, so the instrumentation dominates):

- ``none``: no instrumentation;
- ``otel``: the contrib Flask/FastAPI instrumentation only (plus the SDK with a
  batch span processor and OTLP/HTTP exporter);
- ``modeltrace``: ``modeltrace.integrations.*.instrument_app`` and a
  ``@modeltrace.monitor``-ed model (its span, metrics and feature capture at the
  default sampling), with the same SDK pipeline.

Each server is its own process on 127.0.0.1; the load comes from a separate
client process (keep-alive connections, a few threads) for ``--duration``
seconds after a short warm-up; the three servers run side by side and their
measurements are interleaved over ``--rounds`` rounds (median), so load from
elsewhere on the machine affects all three alike. Spans are exported over OTLP/HTTP to a sink in
this process that answers 200 without decoding. The target is
``modeltrace / otel >= 0.9``. Usage::

    python benchmarks/http_overhead.py [--duration 2] [--concurrency 4] [--rounds 3]

Numbers depend on the machine; on a shared 2-core box client and server
compete, which lowers absolute rates but keeps the ratios comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
MODES = ("none", "otel", "modeltrace")
FRAMEWORKS = ("flask", "fastapi")
ROW = {"tenure_months": 3.0, "monthly_charges": 99.0}


# ------------------------------------------------------------------ server --


class Row(BaseModel):
    tenure_months: float
    monthly_charges: float


def _predict(rows: list[dict[str, float]]) -> list[float]:
    return [row["tenure_months"] + row["monthly_charges"] for row in rows]


def _model(mode: str) -> Any:
    if mode != "modeltrace":
        return _predict
    import modeltrace

    return modeltrace.monitor(model="churn", version="3")(_predict)


def _telemetry(mode: str) -> None:
    if mode != "none":
        import modeltrace

        modeltrace.configure(service_name=f"bench-{mode}")


def flask_app(mode: str) -> Any:
    from flask import Flask, jsonify, request

    _telemetry(mode)
    predict = _model(mode)
    app = Flask("bench")

    @app.post("/predict")
    def predict_route():  # type: ignore[no-untyped-def]
        return jsonify(churn=predict(request.get_json()))

    if mode == "otel":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app)
    elif mode == "modeltrace":
        from modeltrace.integrations.flask import instrument_app

        instrument_app(app)
    return app


def fastapi_app(mode: str) -> Any:
    from fastapi import FastAPI

    _telemetry(mode)
    predict = _model(mode)
    app = FastAPI()

    @app.post("/predict")
    def predict_route(rows: list[Row]) -> dict[str, list[float]]:
        return {"churn": predict([row.model_dump() for row in rows])}

    if mode == "otel":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app)
    elif mode == "modeltrace":
        from modeltrace.integrations.fastapi import instrument_app

        instrument_app(app)
    return app


def serve(framework: str, mode: str, port: int) -> None:
    if framework == "flask":
        from werkzeug.serving import run_simple

        run_simple("127.0.0.1", port, flask_app(mode), threaded=True)
    else:
        import uvicorn

        uvicorn.run(fastapi_app(mode), host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------ client --


def load(url: str, duration: float, concurrency: int) -> None:
    """Send requests for ``duration`` s from ``concurrency`` threads; print JSON counts."""
    import requests

    counts = [0] * concurrency
    errors = [0] * concurrency
    stop_at = time.perf_counter() + duration

    def worker(index: int) -> None:
        session = requests.Session()
        body = json.dumps([ROW])
        headers = {"content-type": "application/json"}
        while time.perf_counter() < stop_at:
            response = session.post(url, data=body, headers=headers, timeout=10)
            if response.status_code == 200:
                counts[index] += 1
            else:
                errors[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests": sum(counts), "errors": sum(errors), "seconds": elapsed}))


# -------------------------------------------------------------- orchestrate --


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def _start(framework: str, mode: str, endpoint: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        }
    )
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", framework, mode, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_ready(port, server)
    return server, f"http://127.0.0.1:{port}/predict"


def _load(url: str, duration: float, concurrency: int) -> float:
    """Requests/second against ``url``, measured by a separate client process."""
    done = subprocess.run(
        [
            *(sys.executable, str(Path(__file__).resolve()), "--load", url),
            str(duration),
            str(concurrency),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout)
    if result["errors"]:
        raise RuntimeError(f"{url}: {result['errors']} failed requests")
    return float(result["requests"] / result["seconds"])


def measure_framework(
    framework: str, duration: float, concurrency: int, rounds: int, endpoint: str
) -> dict[str, float]:
    """Median requests/second per mode; the modes' runs are interleaved round by round."""
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for mode in MODES:
            servers[mode] = _start(framework, mode, endpoint)
        for _, url in servers.values():
            _load(url, 0.5, concurrency)  # warm-up
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode in MODES:
                samples[mode].append(_load(servers[mode][1], duration, concurrency))
        return {mode: statistics.median(values) for mode, values in samples.items()}
    finally:
        for server, _ in servers.values():
            server.terminate()
        for server, _ in servers.values():
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def run(
    duration: float, concurrency: int, rounds: int, frameworks: tuple[str, ...]
) -> dict[str, Any]:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    results: dict[str, Any] = {}
    try:
        for framework in frameworks:
            rates = measure_framework(framework, duration, concurrency, rounds, endpoint)
            results[framework] = {
                **{f"{mode}_rps": round(rate, 1) for mode, rate in rates.items()},
                "modeltrace_vs_otel": round(rates["modeltrace"] / rates["otel"], 3),
                "modeltrace_vs_none": round(rates["modeltrace"] / rates["none"], 3),
            }
    finally:
        sink.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--serve"]:
        framework, mode, port = args[1], args[2], int(args[3])
        serve(framework, mode, port)
        return 0
    if args[:1] == ["--load"]:
        load(args[1], float(args[2]), int(args[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--framework", choices=FRAMEWORKS, action="append")
    options = parser.parse_args(args)
    if options.duration <= 0 or options.concurrency <= 0 or options.rounds <= 0:
        parser.error("--duration, --concurrency and --rounds must be positive")
    frameworks = tuple(options.framework or FRAMEWORKS)
    results = run(options.duration, options.concurrency, options.rounds, frameworks)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
