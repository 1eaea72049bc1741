"""``modeltrace demo`` run for real (short duration): served model, HTTP traffic, drift table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from modeltrace.drift import DriftAggregator

pytestmark = pytest.mark.e2e


def _demo(tmp_path: Path, *args: str) -> tuple[str, Path]:
    store = tmp_path / "demo.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modeltrace.cli",
            "demo",
            "--duration",
            "10",
            "--rate",
            "50",
            "--store",
            str(store),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, store


def _final_table(stdout: str) -> dict[str, str]:
    final = stdout.split("== final drift report")[1].split("where to look next")[0]
    verdicts = {}
    for line in final.splitlines():
        cells = line.split()
        if len(cells) >= 6 and cells[5] in ("DRIFT", "ok"):
            verdicts[cells[0]] = cells[5]
    return verdicts


def test_demo_flags_the_drifted_features_and_says_where_to_look(tmp_path: Path) -> None:
    stdout, store = _demo(tmp_path)
    assert "serving credit-risk v1 at http://127.0.0.1:" in stdout
    match = re.search(r"final drift report: (\d+) requests ok, 0 failed", stdout)
    assert match and int(match.group(1)) > 150
    verdicts = _final_table(stdout)
    assert set(verdicts) >= {"age", "income", "employment", "region", "__prediction__"}
    assert verdicts["income"] == "DRIFT"
    assert verdicts["employment"] == "DRIFT"
    # exemplar trace ids are printed for the drifted features and are real trace ids
    income_line = next(line for line in stdout.splitlines() if line.strip().startswith("income:"))
    trace_ids = re.findall(r"\b[0-9a-f]{32}\b", income_line)
    assert trace_ids
    assert f"modeltrace report --store {store}" in stdout
    # delayed labels: realized performance next to the CBPE estimate, and the HTML report
    final_perf = stdout.split("-- final performance: ")[1].split("where to look next")[0]
    joined = int(final_perf.split(" labels joined")[0])
    assert joined > 50
    accuracy = re.search(r"^accuracy\s+(\d\.\d+)\s+(\d\.\d+)", final_perf, re.MULTILINE)
    assert accuracy, final_perf
    assert 0.4 < float(accuracy.group(1)) <= 1.0 and 0.4 < float(accuracy.group(2)) <= 1.0
    html = store.with_suffix(".html")
    assert f"open {html.resolve().as_uri()}" in stdout
    page = html.read_text(encoding="utf-8")
    assert "Performance over time" in page and "<svg" in page
    # the store left behind holds the same verdicts
    agg = DriftAggregator(store=str(store))
    try:
        report = agg.evaluate("credit-risk", "1")
        assert report.feature("income").drifted
        assert set(report.feature("income").exemplar_trace_ids) >= set(trace_ids[:1])
    finally:
        agg.close()


def test_demo_without_drift_reports_no_dataset_drift(tmp_path: Path) -> None:
    stdout, _ = _demo(tmp_path, "--no-drift")
    assert "without drift" in stdout
    verdicts = _final_table(stdout)
    assert verdicts
    assert "no dataset drift" in stdout.split("== final drift report")[1]
    assert sum(v == "DRIFT" for v in verdicts.values()) < len(verdicts) / 2
