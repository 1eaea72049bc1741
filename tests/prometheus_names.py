"""Prometheus names of modeltrace's metrics, produced by the real OTel Prometheus exporter.

The alert rules and the Grafana dashboard are written against Prometheus names (OTel
names converted: "." -> "_", unit suffix such as ``_seconds``, ``_total`` for counters,
``_bucket``/``_sum``/``_count`` for histograms). Instead of re-deriving those rules, this
module asks ``opentelemetry-exporter-prometheus``: the SDK instruments as SPEC.md
defines them (names from ``modeltrace.semconv``, instrument kinds and units from the
SPEC table) and the aggregator's gauges (no unit) record one value each, in a
subprocess so that the exporter's global ``prometheus_client`` registry does not leak
into other tests; the exposition text gives the metric and label names.

Also holds the small PromQL helpers shared by the rule and dashboard tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

_SCRIPT = r"""
import json
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import REGISTRY, generate_latest
from modeltrace import semconv

reader = PrometheusMetricReader(disable_target_info=True)
meter = MeterProvider(metric_readers=[reader]).get_meter(semconv.SCOPE)
model = {semconv.MODEL_NAME: "m", semconv.MODEL_VERSION: "1"}
call = {**model, semconv.MODEL_OPERATION: "predict", semconv.ERROR_TYPE: "ValueError"}
feature = {**model, semconv.FEATURE_NAME: "f", semconv.DRIFT_METHOD: "psi"}
# The SDK instruments as SPEC.md ("Telemetry names") defines them.
meter.create_histogram(semconv.METRIC_PREDICT_DURATION, unit="s").record(0.1, call)
meter.create_counter(semconv.METRIC_PREDICT_ERRORS, unit="{error}").add(1, call)
meter.create_counter(semconv.METRIC_PREDICTIONS, unit="{prediction}").add(1, model)
meter.create_histogram(semconv.METRIC_BATCH_SIZE, unit="{row}").record(1, model)
meter.create_histogram(semconv.METRIC_PREDICTION_VALUE).record(1.0, model)
for name, attributes in (
    (semconv.METRIC_DRIFT_SCORE, feature),
    (semconv.METRIC_DRIFT_DETECTED, feature),
    (semconv.METRIC_DRIFT_SHARE, model),
    (semconv.METRIC_DRIFT_SAMPLES, model),
    (semconv.METRIC_MISSING_RATIO, {**model, semconv.FEATURE_NAME: "f"}),
    (semconv.METRIC_PERFORMANCE, {**model, semconv.PERFORMANCE_METRIC: "accuracy"}),
):
    meter.create_gauge(name).set(0.5, attributes)
names, labels = set(), set()
for line in generate_latest(REGISTRY).decode().splitlines():
    if line.startswith("ml_"):
        name, _, rest = line.partition("{")
        names.add(name)
        labels.update(k for k in __import__("re").findall(r'(\w+)="', rest))
print(json.dumps({"names": sorted(names), "labels": sorted(labels)}))
"""


@cache
def exported() -> tuple[frozenset[str], frozenset[str]]:
    """(metric names, label names) as Prometheus exposes modeltrace's metrics."""
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    data = json.loads(proc.stdout)
    return frozenset(data["names"]), frozenset(data["labels"]) - {"le"}


def promtool() -> str:
    """Path of promtool (Debian package ``prometheus``, installed by .ci/run)."""
    path = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(path).is_file(), "promtool not found: apt-get install prometheus"
    return path


_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BY = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")


def referenced_metrics(expr: str) -> set[str]:
    """Metric names (``ml_*``) a PromQL expression selects."""
    bare = _MATCHERS.sub("", _BY.sub("", _STRING.sub('""', expr)))
    return {m for m in _IDENT.findall(bare) if m.startswith("ml_")}


def referenced_labels(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring clauses."""
    bare = _STRING.sub('""', expr)
    labels: set[str] = set()
    for group in _BY.findall(bare):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    for group in _MATCHERS.findall(bare):
        labels.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", group))
    return labels
