"""``modeltrace report --format html -o FILE`` writes the service's model page from a store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from modeltrace.drift import DriftAggregator, Reference
from modeltrace.drift.label_upload import LabelEntry
from test_service_performance import MODEL, VERSION, _data, _predictions


def test_report_html_is_written_from_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    ref = _data(1, 1000, 0.0)
    agg = DriftAggregator(store)
    agg.set_reference(
        MODEL,
        VERSION,
        Reference.from_data(
            {"x": ref["x"]},
            predictions=ref["pred"],
            targets=ref["truth"],
            scores=ref["top"],
            categorical={"__prediction__": True},
        ),
    )
    prod = _data(2, 120, 1.5)
    agg.ingest_durable([_predictions(prod)])
    agg.ingest_labels(MODEL, VERSION, [LabelEntry(f"q{i}", 0, prod["truth"][i]) for i in range(80)])
    agg.set_slo(MODEL, VERSION, {"accuracy": 0.95})
    agg.evaluate(MODEL, VERSION)
    agg.close()
    out = tmp_path / "report.html"
    command = [sys.executable, "-m", "modeltrace.cli", "report", "--store", str(store)]
    proc = subprocess.run(
        [*command, "--model", MODEL, "--format", "html", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert re.search(r'<tr class="drifted"><td><code><a href="#[^"]+">x</a>', page)
    assert "Performance over time" in page and "threshold 0.95" in page
    assert "label coverage 66.7%" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing external
    missing = subprocess.run(
        [*command, "--model", "nope", "--format", "html"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 1 and "unknown model" in missing.stderr
