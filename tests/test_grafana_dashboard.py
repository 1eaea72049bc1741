"""The Grafana dashboard collector/grafana/modeltrace.json: structure and PromQL.

Every PromQL expression of the dashboard (panel targets, annotation queries, and the
selectors inside the ``label_values(...)`` variable queries) is written, with template
variables substituted, into a throwaway rule file and checked by ``promtool check rules``;
the metric and label names must be those the OTel Prometheus exporter produces for
modeltrace's instruments (tests/prometheus_names.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prometheus_names import exported, promtool, referenced_labels, referenced_metrics

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "collector" / "grafana"
DASHBOARD = GRAFANA / "modeltrace.json"
# Grafana's built-in variables and the values used for them in the check.
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
SAMPLE_VALUES = {"model": "churn", "version": "3", "feature": "tenure", "datasource": "x"}
PROMETHEUS_LABELS = {"le", "job", "instance", "alertname", "alertstate", "severity"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard."""
    found: list[tuple[str, str]] = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: not a label_values(selector, label) query"
        found.append((f"variable {variable['name']!r}", match.group(1)))
        assert variable["definition"] == query
    return found


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return {**BUILTINS, **SAMPLE_VALUES}[name]

    return _VARIABLE.sub(value, expr)


def promtool_check(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_promql_expression_is_valid(dashboard: dict[str, Any], tmp_path: Path) -> None:
    exprs = [substitute(e) for _, e in expressions(dashboard)]
    assert len(exprs) >= 15
    proc = promtool_check(exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_promtool_check_catches_a_broken_expression(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    exprs = [substitute(e) for _, e in expressions(dashboard)]
    broken = exprs[0].replace("sum by (ml_model_version) (", "sum by (ml_model_version (", 1)
    assert broken != exprs[0]
    proc = promtool_check([*exprs[1:], broken], tmp_path)
    assert proc.returncode != 0


def test_queries_use_exported_names_and_defined_variables(dashboard: dict[str, Any]) -> None:
    names, labels = exported()
    defined = {v["name"] for v in dashboard["templating"]["list"]} | set(BUILTINS)
    for where, expr in expressions(dashboard):
        metrics = referenced_metrics(expr) - {"ALERTS"}
        assert metrics <= names, (where, metrics - names)
        used = referenced_labels(expr)
        assert used <= labels | PROMETHEUS_LABELS, (where, used - labels)
        variables = {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(expr)}
        assert variables <= defined, (where, variables - defined)


def test_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "modeltrace-model"
    panels = list(all_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert len(variables) == len(set(variables))
    datasource_vars = {
        v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"
    }
    assert datasource_vars == {"datasource"}
    assert all(
        v["query"] == "prometheus"
        for v in dashboard["templating"]["list"]
        if v["type"] == "datasource"
    )
    refs: list[dict[str, Any]] = []
    for panel in panels:
        if panel["type"] == "row":
            continue
        refs.append(panel["datasource"])
        refs.extend(t["datasource"] for t in panel["targets"])
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    refs.extend(v["datasource"] for v in dashboard["templating"]["list"] if v["type"] == "query")
    for ref in refs:
        assert ref["type"] == "prometheus"
        match = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
        assert match and match.group(1) in datasource_vars, ref
    # Panels do not overlap on the grid.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & area, f"panel {panel['title']!r} overlaps another"
        assert pos["x"] + pos["w"] <= 24
        cells |= area


def test_per_model_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "ml_model_name" in variables["model"]["query"]["query"]
    assert 'ml_model_name="$model"' in variables["version"]["query"]["query"]
    for where, expr in expressions(dashboard):
        if where.startswith("panel"):
            assert 'ml_model_name="$model"' in expr, where
            assert 'ml_model_version=~"$version"' in expr, where


def test_panels_cover_the_model_health_signals(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(e for _, e in expressions(dashboard))
    for metric in (
        "ml_model_predict_duration_seconds_count",  # traffic
        "ml_model_predictions_total",
        "ml_model_predict_errors_total",  # errors
        "ml_model_predict_duration_seconds_bucket",  # latency
        "ml_drift_score",
        "ml_drift_detected",
        "ml_drift_share",
        "ml_data_missing_ratio",
        "ml_model_performance",
    ):
        assert metric in exprs, metric
    quantiles = set(re.findall(r"histogram_quantile\((0\.\d+)", exprs))
    assert {"0.5", "0.9", "0.99"} <= quantiles


def test_latency_panels_show_exemplars_linked_to_traces(dashboard: dict[str, Any]) -> None:
    latency = [
        p
        for p in all_panels(dashboard["panels"])
        if any("_seconds_bucket" in t.get("expr", "") for t in p.get("targets", []))
    ]
    assert latency
    for panel in latency:
        assert all(t.get("exemplar") is True for t in panel["targets"]), panel["title"]
    provisioning = yaml.safe_load((GRAFANA / "datasources.yaml").read_text())
    sources = {d["uid"]: d for d in provisioning["datasources"]}
    (destination,) = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"
    assert destination["datasourceUid"] in sources
