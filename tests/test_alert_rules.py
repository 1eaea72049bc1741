"""Prometheus rules under collector/prometheus: promtool-clean, unit-tested, runbooks.

``promtool check rules`` must pass on the rule files and ``promtool test rules`` on every
unit-test file in collector/prometheus/tests (each alert fires on the series that should
fire it and stays quiet on a healthy series; the tests below check that every alert has
both kinds of case). Metric and label names are compared with what the real OTel
Prometheus exporter produces for modeltrace's instruments (tests/prometheus_names.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from prometheus_names import exported, promtool, referenced_labels, referenced_metrics

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "collector" / "prometheus"
RULE_FILES = (PROMETHEUS / "recording_rules.yaml", PROMETHEUS / "alerts.yaml")
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yaml"))
RUNBOOKS = REPO / "collector" / "runbooks"
SEVERITIES = {"warning", "critical"}
# Labels that come from Prometheus itself, not from modeltrace's attributes.
PROMETHEUS_LABELS = {"le", "job", "instance", "__name__"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def test_promtool_check_rules_is_clean() -> None:
    proc = _run("check", "rules", *map(str, RULE_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(RULE_FILES)
    assert "WARNING" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    proc = _run("test", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_fires_and_stays_quiet_in_unit_tests() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fires == set(), "alerts never expected to fire"
    assert names - quiet == set(), "alerts never expected to stay quiet"


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests catch a wrong threshold (they are not vacuous)."""
    for path in RULE_FILES:
        shutil.copy(path, tmp_path / path.name)
    alerts = tmp_path / "alerts.yaml"
    text = alerts.read_text()
    assert text.count("ml_drift_share >= 0.5") == 1
    alerts.write_text(text.replace("ml_drift_share >= 0.5", "ml_drift_share >= 0.6"))
    (tmp_path / "tests").mkdir()
    shutil.copy(PROMETHEUS / "tests" / "drift.yaml", tmp_path / "tests" / "drift.yaml")
    proc = _run("test", "rules", str(tmp_path / "tests" / "drift.yaml"))
    assert proc.returncode != 0
    assert "alertname: ModelDatasetDrift" in proc.stdout + proc.stderr


def test_alerts_are_tiered_with_runbooks() -> None:
    alerts = _alerts()
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert alert["annotations"]["summary"], name
        runbook = alert["annotations"]["runbook_url"]
        assert runbook == f"collector/runbooks/{_kebab(name)}.md", name
        text = (REPO / runbook).read_text()
        assert text.startswith(f"# {name} ({alert['labels']['severity']})\n"), runbook
    assert {a["labels"]["severity"] for a in alerts} == SEVERITIES
    linked = {Path(a["annotations"]["runbook_url"]).name for a in alerts}
    assert {p.name for p in RUNBOOKS.glob("*.md")} == linked, "runbook without an alert"


def test_rules_use_the_exported_metric_and_label_names() -> None:
    names, labels = exported()
    recorded = {r["record"] for r in _rules() if "record" in r}
    for rule in _rules():
        expr = rule["expr"]
        assert referenced_metrics(expr) <= names, (rule, referenced_metrics(expr) - names)
        used = referenced_labels(expr)
        assert used <= labels | PROMETHEUS_LABELS, (rule, used - labels)
        for name in re.findall(r"\bml:[\w:]+", expr):
            assert name in recorded, f"{name} is not a recording rule"


def test_required_alert_coverage() -> None:
    """The alert set of issue 6: drift (warning + critical), data quality, SLO burn,
    latency p99, performance and staleness."""
    exprs = {a["alert"]: a["expr"] for a in _alerts()}
    severity = {a["alert"]: a["labels"]["severity"] for a in _alerts()}
    assert "ml_drift_detected" in exprs["ModelFeatureDrift"]
    assert severity["ModelFeatureDrift"] == "warning"
    assert "ml_drift_share" in exprs["ModelDatasetDrift"]
    assert '"__prediction__"' in exprs["ModelPredictionDrift"]
    assert severity["ModelDatasetDrift"] == severity["ModelPredictionDrift"] == "critical"
    assert "ml_data_missing_ratio" in exprs["ModelFeatureMissingRatioJump"]
    fast, slow = exprs["ModelErrorBudgetBurnFast"], exprs["ModelErrorBudgetBurnSlow"]
    assert {"rate1h", "rate5m", "rate6h", "rate30m"} <= set(re.findall(r"rate\d+[mhd]", fast))
    assert {"rate1d", "rate2h", "rate3d", "rate6h"} <= set(re.findall(r"rate\d+[mhd]", slow))
    assert "p99" in exprs["ModelPredictLatencyP99High"]
    assert "ml_model_performance" in exprs["ModelPerformanceBelowSLO"]
    assert "absent(" in exprs["ModeltraceAggregatorDown"]


def test_prometheus_example_config_is_valid(tmp_path: Path) -> None:
    """prometheus.yml with its rule files; the token file is created for the check."""
    for path in RULE_FILES:
        shutil.copy(path, tmp_path / path.name)
    token = tmp_path / "token"
    token.write_text("secret\n")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert config.count("/etc/modeltrace/token") == 1
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/modeltrace/token", str(token)))
    proc = _run("check", "config", str(tmp_path / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 2 rule files found" in proc.stdout
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", proc.stdout))
    assert found == len(_rules())


def test_readme_lists_the_prometheus_names() -> None:
    readme = (REPO / "collector" / "README.md").read_text()
    used: set[str] = set()
    for rule in _rules():
        used |= referenced_metrics(rule["expr"]) | referenced_labels(rule["expr"])
    for name in sorted(used - PROMETHEUS_LABELS):
        assert f"`{name}`" in readme, name
