"""``modeltrace demo``: the whole loop on one machine, in about a minute.

It trains a small scikit-learn model on synthetic credit data, builds the
drift reference from the training set, serves the model with the FastAPI
integration on 127.0.0.1 (uvicorn), sends it real HTTP traffic that drifts
part-way (incomes fall, the employment mix changes), feeds every prediction
span to an embedded ``DriftAggregator`` (``configure(drift=agg)``), and shows
in the terminal how the drift table changes. Spans also go to an OTLP
endpoint when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces variant) is set.

Ground truth arrives late, as in production: the traffic client keeps the
``prediction_id`` of each ``/score`` answer and, ``label_delay`` seconds later,
a label feed records the true outcome (drawn from the application's true
default probability) with ``modeltrace.record_label``. The terminal shows the
realized performance on the labelled predictions next to the CBPE estimate
(available at once), and the demo ends by writing the HTML report next to the
store (``modeltrace-demo.html``).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from modeltrace.demo import data
from modeltrace.demo.app import MODEL_NAME, MODEL_VERSION, build_app
from modeltrace.drift import DriftAggregator, DriftReport, Reference

TRAINING_ROWS = 5000


@dataclass(frozen=True)
class DemoOptions:
    """What ``modeltrace demo`` was asked to do."""

    duration: float = 45.0
    port: int = 0
    drift: bool = True
    store: Path = Path("modeltrace-demo.db")
    rate: float = 40.0
    seed: int = 7
    label_delay: float | None = None  # seconds before a label arrives (default: duration/8)

    @property
    def delay(self) -> float:
        if self.label_delay is not None:
            return self.label_delay
        return min(5.0, max(1.0, self.duration / 8.0))

    @property
    def html_report(self) -> Path:
        """Where the HTML report is written: next to the store."""
        return self.store.with_suffix(".html")


@dataclass
class _Traffic:
    """Counters shared between the client thread and the display."""

    sent: int = 0
    failed: int = 0
    drifting: bool = False
    labelled: int = 0


def train(seed: int) -> tuple[Any, Reference]:
    """Fit the demo model and summarise its training data as the drift reference."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    rows = data.applications(TRAINING_ROWS, rng)
    labels = data.default_labels(rows, rng)
    pipeline = make_pipeline(
        DictVectorizer(sparse=False),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    ).fit(rows, labels)
    reference = Reference.from_data(
        rows,
        predictions=pipeline.predict(rows),
        categorical=list(data.CATEGORICAL),
        targets=labels,
        scores=pipeline.predict_proba(rows).max(axis=1),
    )
    return pipeline, reference


def run(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the process exit code."""
    import uvicorn

    say = _printer(out)
    say(f"modeltrace demo: training a credit-risk model on {TRAINING_ROWS} synthetic applications")
    pipeline, reference = train(options.seed)

    if options.store.exists():
        say(f"replacing the previous demo store {options.store}")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{options.store}{suffix}").unlink(missing_ok=True)
    window = max(options.duration * 0.4, 4.0)
    aggregator = DriftAggregator(
        store=str(options.store), pane_seconds=window / 6.0, window_seconds=window
    )
    aggregator.set_reference(MODEL_NAME, MODEL_VERSION, reference)
    handle = _configure(aggregator)

    app = build_app(pipeline)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=options.port, log_level="warning")
    )
    server_thread = threading.Thread(target=server.run, name="demo-server", daemon=True)
    server_thread.start()
    port = _wait_for_port(server)
    say(f"serving {MODEL_NAME} v{MODEL_VERSION} at http://127.0.0.1:{port}/score")
    drift_at = options.duration * 0.5 if options.drift else None
    if drift_at is None:
        say(f"sending {options.rate:g} requests/s for {options.duration:g}s, without drift")
    else:
        say(
            f"sending {options.rate:g} requests/s for {options.duration:g}s; "
            f"drift starts after {drift_at:g}s (incomes fall, the employment mix changes)"
        )

    say(f"true labels follow each prediction {options.delay:g}s later (modeltrace.record_label)")

    traffic = _Traffic()
    stop = threading.Event()
    answered: queue.Queue[tuple[float, str, dict[str, object]]] = queue.Queue()
    client = threading.Thread(
        target=_send_traffic,
        args=(port, options, drift_at, traffic, stop, answered),
        name="demo-client",
        daemon=True,
    )
    labeller = threading.Thread(
        target=_send_labels,
        args=(options, traffic, stop, answered),
        name="demo-labels",
        daemon=True,
    )
    started = time.monotonic()
    client.start()
    labeller.start()
    report: DriftReport | None = None
    live = out.isatty()
    try:
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= options.duration:
                break
            stop.wait(min(3.0, options.duration - elapsed))
            report = _evaluate(aggregator)
            _show(out, live, time.monotonic() - started, options, traffic, report)
            _show_performance(out, aggregator)
    finally:
        stop.set()
        client.join(timeout=10)
        labeller.join(timeout=10)
        server.should_exit = True
        server_thread.join(timeout=10)
        handle.force_flush()
        report = _evaluate(aggregator) or report
        aggregator.checkpoint()
        handle.shutdown()
        _show(out, False, time.monotonic() - started, options, traffic, report, final=True)
        _show_performance(out, aggregator, final=True)
        html_written = _write_html(aggregator, options, say)
        aggregator.close()

    _where_next(say, options, traffic, report)
    if html_written:
        say(f"  html:    open {options.html_report.resolve().as_uri()} in a browser")
    return 0 if traffic.sent > 0 and report is not None else 1


def _configure(aggregator: DriftAggregator) -> Any:
    """Set up OpenTelemetry: spans to the aggregator, and to OTLP if an endpoint is set."""
    import modeltrace

    otlp = any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if otlp:
        return modeltrace.configure(service_name="modeltrace-demo", drift=aggregator)
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": "modeltrace-demo"})
    trace.set_tracer_provider(TracerProvider(resource=resource))
    metrics.set_meter_provider(MeterProvider(resource=resource))
    return modeltrace.configure(drift=aggregator)


def _wait_for_port(server: Any, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.started and server.servers:
            return int(server.servers[0].sockets[0].getsockname()[1])
        time.sleep(0.05)
    raise RuntimeError("the demo server did not start within 20 s")


def _send_traffic(
    port: int,
    options: DemoOptions,
    drift_at: float | None,
    traffic: _Traffic,
    stop: threading.Event,
    answered: queue.Queue[tuple[float, str, dict[str, object]]] | None = None,
) -> None:
    """Post applications at ``options.rate`` per second until ``stop`` is set; the
    prediction id of each answer goes to ``answered`` (for the label feed)."""
    rng = np.random.default_rng(options.seed + 1)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    interval = 1.0 / options.rate
    next_at = started
    while not stop.is_set():
        traffic.drifting = drift_at is not None and time.monotonic() - started >= drift_at
        drift = data.DEMO_DRIFT if traffic.drifting else data.NO_DRIFT
        application = data.applications(1, rng, drift)[0]
        body = json.dumps(application)
        try:
            connection.request("POST", "/score", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status == 200:
                traffic.sent += 1
                prediction_id = json.loads(payload).get("prediction_id")
                if answered is not None and isinstance(prediction_id, str):
                    answered.put((time.monotonic(), prediction_id, application))
            else:
                traffic.failed += 1
        except (OSError, http.client.HTTPException):
            traffic.failed += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()
    connection.close()


def _send_labels(
    options: DemoOptions,
    traffic: _Traffic,
    stop: threading.Event,
    answered: queue.Queue[tuple[float, str, dict[str, object]]],
) -> None:
    """The delayed label feed: each answered prediction gets its true label
    ``options.delay`` seconds later (or at the end, if the demo stops first)."""
    import modeltrace

    rng = np.random.default_rng(options.seed + 2)
    while True:
        try:
            sent_at, prediction_id, application = answered.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        wait = sent_at + options.delay - time.monotonic()
        if wait > 0 and stop.wait(wait):
            return  # the demo ended: later labels never arrive
        label = int(data.default_labels([application], rng)[0])
        modeltrace.record_label(prediction_id, label, model=MODEL_NAME, version=MODEL_VERSION)
        traffic.labelled += 1


def _show_performance(out: TextIO, aggregator: DriftAggregator, final: bool = False) -> None:
    try:
        perf = aggregator.performance(MODEL_NAME, MODEL_VERSION)
    except KeyError:
        return
    out.write("\n".join(format_performance(perf, final)) + "\n")
    out.flush()


def format_performance(perf: dict[str, Any], final: bool = False) -> list[str]:
    """Realized (labelled rows) and estimated (CBPE) performance as lines of text."""
    realized = perf.get("realized") or {}
    estimated = (perf.get("estimated") or {}).get("metrics") or {}
    labels = perf.get("labels") or {}
    title = "final performance" if final else "performance"
    lines = [
        f"-- {title}: {labels.get('matched', 0)} labels joined, {labels.get('pending', 0)} "
        f"waiting, label coverage {_percent(perf.get('label_coverage'))} --"
    ]
    rows = [("metric", "realized", "estimated (CBPE)")]
    for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"):
        if name in realized or name in estimated:
            rows.append((name, _value(realized.get(name)), _value(estimated.get(name))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return lines


def _value(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def _percent(value: object) -> str:
    return f"{value:.0%}" if isinstance(value, float) else "-"


def _write_html(
    aggregator: DriftAggregator, options: DemoOptions, say: Callable[[str], None]
) -> bool:
    from modeltrace.drift.report_pages import model_page

    try:
        page = model_page(aggregator, MODEL_NAME, MODEL_VERSION, index_href=None)
    except KeyError:
        return False
    options.html_report.write_text(page, encoding="utf-8")
    say(f"wrote the HTML report {options.html_report}")
    return True


def _evaluate(aggregator: DriftAggregator) -> DriftReport | None:
    try:
        return aggregator.evaluate(MODEL_NAME, MODEL_VERSION)
    except KeyError:  # no prediction has reached the window yet
        return None


def _show(
    out: TextIO,
    live: bool,
    elapsed: float,
    options: DemoOptions,
    traffic: _Traffic,
    report: DriftReport | None,
    final: bool = False,
) -> None:
    lines = []
    phase = "drifting traffic" if traffic.drifting else "baseline traffic"
    title = "final drift report" if final else f"t={elapsed:4.0f}s/{options.duration:g}s  {phase}"
    lines.append(f"\n== {title}: {traffic.sent} requests ok, {traffic.failed} failed ==")
    lines.extend(format_report(report))
    text = "\n".join(lines)
    if live:
        out.write("\x1b[H\x1b[2J")
    out.write(text + "\n")
    out.flush()


def format_report(report: DriftReport | None) -> list[str]:
    """The drift table of ``report`` as lines of text."""
    if report is None:
        return ["(no prediction in the window yet)"]
    rows = [("feature", "method", "score", "p-value", "threshold", "drifted", "n", "missing")]
    for f in report.features:
        score = f"{f.score:.4f}" if f.enough_data else "-"
        p_value = "-" if f.p_value is None else f"{f.p_value:.3g}"
        rows.append(
            (
                f.name,
                f.method,
                score,
                p_value,
                f"{f.threshold:g}",
                "DRIFT" if f.drifted else "ok",
                str(f.n_current),
                f"{f.missing_ratio:.1%}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    verdict = "DATASET DRIFT" if report.dataset_drift else "no dataset drift"
    lines.append(
        f"drift share {report.drift_share:.0%} ({report.n_drifted}/{report.n_evaluated} features)"
        f" -> {verdict}; {report.n_samples} samples in the window"
    )
    return lines


def _where_next(
    say: Callable[[str], None],
    options: DemoOptions,
    traffic: _Traffic,
    report: DriftReport | None,
) -> None:
    say("")
    say("where to look next:")
    say(f"  store:   {options.store.resolve()}")
    say(
        f"  report:  modeltrace report --store {options.store} "
        f"--model {MODEL_NAME} --version {MODEL_VERSION}"
    )
    if report is None:
        return
    drifted = [f for f in report.features if f.drifted]
    if not drifted:
        say(
            "  no feature drifted"
            + ("" if options.drift else " (run without --no-drift to see drift)")
        )
        return
    say("  drifted features and example traces (look them up in your trace backend):")
    for feature in drifted:
        traces = ", ".join(feature.exemplar_trace_ids[:3]) or "(none captured)"
        name = feature.name
        if name.startswith("__") and name != "__prediction__":
            name = f"{name} ({feature.method})"  # dataset-level: one entry per method
        say(f"    {name}: {traces}")


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return say
