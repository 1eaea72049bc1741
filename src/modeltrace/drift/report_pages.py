"""The data of the HTML report pages, gathered from a ``DriftAggregator``.

``index_page(agg)`` and ``model_page(agg, model, version)`` return the HTML of
``modeltrace.drift.html`` fed with: the current ``DriftReport``, per feature
the reference's binned counts next to the current window's (from the window's
sketches), the drift score history of each feature (from the report history,
oldest first), performance over time (realized and estimated, from the label
join) with the SLO line and the latest performance report. The service serves
them (``GET /``, ``GET /models/{model}/versions/{version}``) and
``modeltrace report --format html`` writes the model page to a file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from modeltrace.drift.aggregator import DriftAggregator, UnknownModelError
from modeltrace.drift.html import render_index, render_model_page
from modeltrace.drift.report import DriftReport

__all__ = ["HISTORY_POINTS", "index_data", "index_page", "model_page", "model_page_data"]

# Drift scores per feature shown in the sparklines.
HISTORY_POINTS = 30


def _histograms(agg: DriftAggregator, model: str, version: str) -> dict[str, dict[str, Any]]:
    reference = agg.reference(model, version)
    current = agg.window(model, version).current()
    out: dict[str, dict[str, Any]] = {}
    for name, feature in reference.features.items():
        labels = feature.binning.labels()
        sketch = current.get(name)
        counts = sketch.counts.tolist() if sketch is not None else [0.0] * len(labels)
        if len(counts) != len(labels) or len(feature.counts) != len(labels):
            continue
        out[name] = {
            "labels": labels,
            "reference": [float(c) for c in feature.counts],
            "current": [float(c) for c in counts],
        }
    return out


def _score_history(agg: DriftAggregator, model: str, version: str) -> dict[str, list[Any]]:
    reports = list(reversed(agg.history(model, version, limit=HISTORY_POINTS)))
    names: list[str] = []
    for report in reports:
        for entry in report.features:
            if entry.name not in names:
                names.append(entry.name)
    history: dict[str, list[Any]] = {name: [] for name in names}
    for report in reports:
        scores = {e.name: e.score for e in report.features if e.enough_data}
        for name in names:
            history[name].append(scores.get(name))
    return history


def model_page_data(
    agg: DriftAggregator,
    model: str,
    version: str,
    *,
    trace_url: str | None = None,
    index_href: str | None = "/",
) -> dict[str, Any]:
    """The input of ``html.render_model_page`` for one model version.

    Raises ``UnknownModelError`` (``MissingReferenceError`` without a reference)."""
    report: DriftReport = agg.evaluate(model, version)
    data: dict[str, Any] = {
        "report": report.to_dict(),
        "histograms": _histograms(agg, model, version),
        "history": _score_history(agg, model, version),
    }
    performance = agg.performance_history(model, version)
    latest = agg.performance(model, version)
    if performance["points"] or latest.get("n_labelled"):
        performance["latest"] = latest
        data["performance"] = performance
    if trace_url is not None:
        data["trace_url"] = trace_url
    if index_href is not None:
        data["index_href"] = index_href
    return data


def model_page(
    agg: DriftAggregator,
    model: str,
    version: str,
    *,
    trace_url: str | None = None,
    index_href: str | None = "/",
) -> str:
    """The HTML page of one model version."""
    return render_model_page(
        model_page_data(agg, model, version, trace_url=trace_url, index_href=index_href)
    )


def _headline(perf: Mapping[str, Any]) -> dict[str, Any] | None:
    realized = perf.get("realized") or {}
    for metric in ("accuracy", "mae"):
        if realized.get(metric) is not None:
            return {"metric": metric, "value": realized[metric], "estimated": False}
    estimated = (perf.get("estimated") or {}).get("metrics") or {}
    if estimated.get("accuracy") is not None:
        return {"metric": "accuracy", "value": estimated["accuracy"], "estimated": True}
    return None


def index_data(agg: DriftAggregator, *, title: str = "modeltrace") -> dict[str, Any]:
    """The input of ``html.render_index``: every model version with its latest verdict."""
    latest = agg.latest_reports(refresh=True)
    models = []
    for entry in agg.models():
        for version in entry["versions"]:
            key = (entry["model"], version["version"])
            row: dict[str, Any] = {
                "model": key[0],
                "version": key[1],
                "samples": version.get("window_samples", version.get("samples")),
            }
            report = latest.get(key)
            if report is not None:
                row.update(
                    dataset_drift=report.dataset_drift,
                    drift_share=report.drift_share,
                    window_end=report.window_end,
                )
            try:
                headline = _headline(agg.performance(*key))
            except UnknownModelError:
                headline = None
            if headline is not None:
                row["performance"] = headline
            models.append(row)
    return {"title": title, "generated_at": time.time(), "models": models}


def index_page(agg: DriftAggregator, *, title: str = "modeltrace") -> str:
    """The HTML page listing every model version."""
    return render_index(index_data(agg, title=title))
