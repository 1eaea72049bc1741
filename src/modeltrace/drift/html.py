"""Self-contained HTML pages of the drift report, rendered from plain data.

No CDN, no script, no external font or image: inline CSS and inline SVG charts
(``modeltrace.drift.charts``), so the page works offline, from a file, and
without JavaScript. Every text that comes from data is escaped.

Two pages, each a function from plain dicts (JSON-shaped) to an HTML string.

``render_index(data)`` — the list of models::

    {
      "title": "modeltrace",                 # optional
      "generated_at": 1700000000.0,          # optional, epoch seconds or text
      "models": [
        {"model": "churn", "version": "3",
         "href": "models/churn/versions/3",  # optional; this is the default (quoted)
         "samples": 1234,                    # optional, rows in the current window
         "dataset_drift": true,              # optional
         "drift_share": 0.25,                # optional
         "window_end": 1700000000.0,         # optional
         "performance": {"metric": "accuracy", "value": 0.91,   # optional
                         "estimated": false}},
      ]
    }

``render_model_page(data)`` — one model version::

    {
      "report": DriftReport.to_dict(),       # required: model, version, window_start,
                                             # window_end, generated_at, dataset_drift,
                                             # drift_share, features [...], quality [...]
      "histograms": {                        # optional, per feature name
        "age": {"labels": ["<18", "18-30", ...],      # one label per bin
                "reference": [120.0, 340.0, ...],    # counts (may be weighted)
                "current":   [80.0, 410.0, ...]},
      },
      "history": {                           # optional, per feature name: drift scores
        "age": [0.02, 0.03, 0.11, ...],      # oldest first, null for a gap
      },
      "performance": {                       # optional
        "metric": "accuracy",
        "threshold": 0.9,                    # optional SLO line
        "points": [{"time": 1700000000.0,    # epoch seconds
                    "realized": 0.93,        # null when no labels yet
                    "estimated": 0.92}],     # null when no estimate
        "latest": PerformanceReport.to_dict()  # optional: table of realized metrics,
      },                                       # intervals, label coverage, SLOs, estimate
      "trace_url": "https://jaeger.example/trace/{trace_id}",   # optional; default
                                             # $MODELTRACE_TRACE_URL; http(s) or "/..."
      "index_href": "/"                      # optional link back to the list
    }

Feature entries use the ``FeatureDrift.to_dict()`` fields: name, method, score,
threshold, drifted, p_value, n_reference, n_current, exemplar_trace_ids,
missing_ratio, reference_missing_ratio, out_of_range_ratio, unseen_ratio
(numbers may be ``null`` or ``"inf"``). Drifted features come first. Exemplar
trace ids become links when a trace URL template is known (the only links to
another host a page may hold); otherwise they are shown as text.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from modeltrace.drift.charts import (
    Series,
    format_number,
    format_time,
    line_chart,
    paired_histogram,
    sparkline,
)

TRACE_URL_ENV = "MODELTRACE_TRACE_URL"
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_MAX_EXEMPLARS = 5

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2329;
background:#fafbfc;line-height:1.4}
header,main,footer{max-width:1160px;margin:0 auto;padding:0 16px}
header{padding-top:16px}
h1{font-size:1.5rem;margin:.2em 0}h2{font-size:1.2rem;margin:1.4em 0 .5em}
h3{font-size:1rem;margin:1em 0 .3em}
a{color:#1f5fa0}
.meta{color:#56606b;font-size:.9rem}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:.85rem}
.bad{background:#fde2e0;color:#8c1d13}.good{background:#dff3e4;color:#1b5e2c}
.muted{background:#eceff2;color:#444}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.88rem}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 7px;text-align:left;vertical-align:middle}
th{background:#f0f2f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td{background:#fff4f2}
tr.drifted td:first-child{border-left:4px solid #c0392b}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:8px 12px}
.card h3 code{font-size:.95rem}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
footer{color:#56606b;font-size:.8rem;padding:24px 16px}
"""


def _text(value: Any) -> str:
    return escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    if value in ("inf", "-inf"):
        return math.inf if value == "inf" else -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt(value: Any) -> str:
    number = _number(value)
    if number is not None and math.isinf(number):
        return "\u221e" if number > 0 else "-\u221e"
    return format_number(number)


def _pct(value: Any) -> str:
    number = _number(value)
    if number is None or not math.isfinite(number):
        return "\u2013"
    return f"{number:.1%}"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>{body}"
        "<footer>Generated by modeltrace. Self-contained page: no scripts, no external "
        "resources.</footer></body></html>"
    )


def trace_link_template(template: str | None) -> str | None:
    """The trace URL template if usable: http(s) or a same-host path, with ``{trace_id}``."""
    if template is None:
        template = os.environ.get(TRACE_URL_ENV)
    if not template or "{trace_id}" not in template:
        return None
    lowered = template.strip().lower()
    if lowered.startswith(("http://", "https://")) or (
        lowered.startswith("/") and not lowered.startswith("//")
    ):
        return template.strip()
    return None


def _exemplars(trace_ids: Sequence[Any], template: str | None) -> str:
    items = []
    for raw in list(trace_ids)[:_MAX_EXEMPLARS]:
        trace_id = str(raw)
        if template is not None and _TRACE_ID.match(trace_id):
            url = template.replace("{trace_id}", trace_id.lower())
            items.append(
                f'<a href="{_text(url)}" rel="noopener noreferrer" title="trace {_text(trace_id)}">'
                f"<code>{_text(trace_id[:8])}</code></a>"
            )
        else:
            items.append(f'<code title="{_text(trace_id)}">{_text(trace_id[:8])}</code>')
    return " ".join(items) if items else "\u2013"


def _drift_badge(drifted: Any) -> str:
    if drifted is None:
        return '<span class="badge muted">unknown</span>'
    if drifted:
        return '<span class="badge bad">drift</span>'
    return '<span class="badge good">no drift</span>'


def render_index(data: Mapping[str, Any]) -> str:
    """The page listing every model version (shape in the module docstring)."""
    title = str(data.get("title") or "modeltrace")
    rows = []
    for entry in data.get("models", []):
        model, version = str(entry.get("model", "")), str(entry.get("version", ""))
        href = entry.get("href") or (
            f"models/{quote(model, safe='')}/versions/{quote(version, safe='')}"
        )
        perf = entry.get("performance") or {}
        perf_text = "\u2013"
        if perf.get("metric"):
            suffix = " (estimated)" if perf.get("estimated") else ""
            perf_text = f"{_text(perf['metric'])} {_fmt(perf.get('value'))}{suffix}"
        rows.append(
            f'<tr><td><a href="{_text(href)}">{_text(model)}</a></td><td>{_text(version)}</td>'
            f'<td class="num">{_fmt(entry.get("samples"))}</td>'
            f"<td>{_drift_badge(entry.get('dataset_drift'))}</td>"
            f'<td class="num">{_pct(entry.get("drift_share"))}</td>'
            f"<td>{perf_text}</td><td>{_text(format_time(entry.get('window_end')))}</td></tr>"
        )
    table = (
        "<table><caption class='meta'>Models seen by the aggregator</caption><thead><tr>"
        "<th>Model</th><th>Version</th><th>Samples</th><th>Dataset drift</th>"
        "<th>Drifted share</th><th>Performance</th><th>Window end</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="7">No model has reported data yet.</td></tr>')
        + "</tbody></table>"
    )
    generated = data.get("generated_at")
    meta = f'<p class="meta">Generated {_text(format_time(generated))}</p>' if generated else ""
    body = f"<header><h1>{_text(title)}</h1>{meta}</header><main>{table}</main>"
    return _page(title, body)


def _feature_rows(
    features: Sequence[Mapping[str, Any]],
    history: Mapping[str, Sequence[Any]],
    anchors: Mapping[str, str],
    template: str | None,
) -> str:
    rows = []
    for feature in features:
        name = str(feature.get("name", ""))
        drifted = bool(feature.get("drifted"))
        spark = sparkline(
            [_number(v) for v in history.get(name, [])],
            title=f"Drift score history of {name}",
            threshold=_number(feature.get("threshold")),
        )
        anchor = anchors.get(name)
        label = f'<a href="#{anchor}">{_text(name)}</a>' if anchor else _text(name)
        missing = (
            f"{_pct(feature.get('missing_ratio'))} / {_pct(feature.get('reference_missing_ratio'))}"
        )
        rows.append(
            f'<tr class="{"drifted" if drifted else "stable"}"><td><code>{label}</code></td>'
            f"<td>{_text(feature.get('method', ''))}</td>"
            f'<td class="num">{_fmt(feature.get("score"))}</td>'
            f'<td class="num">{_fmt(feature.get("threshold"))}</td>'
            f'<td class="num">{_fmt(feature.get("p_value"))}</td>'
            f"<td>{'<strong>yes</strong>' if drifted else 'no'}</td>"
            f'<td class="num">{missing}</td>'
            f'<td class="num">{_pct(feature.get("out_of_range_ratio"))}</td>'
            f'<td class="num">{_pct(feature.get("unseen_ratio"))}</td>'
            f'<td class="num">{_fmt(feature.get("n_reference"))} / '
            f"{_fmt(feature.get('n_current'))}</td>"
            f"<td>{spark}</td><td>{_exemplars(feature.get('exemplar_trace_ids') or [], template)}"
            "</td></tr>"
        )
    return (
        "<table><thead><tr><th>Feature</th><th>Method</th><th>Score</th><th>Threshold</th>"
        "<th>p-value</th><th>Drifted</th><th>Missing (current / reference)</th>"
        "<th>Out of range</th><th>Unseen</th><th>n (reference / current)</th>"
        "<th>History</th><th>Example traces</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="12">No feature evaluated.</td></tr>')
        + "</tbody></table>"
    )


def _histograms(
    features: Sequence[Mapping[str, Any]],
    bins: Mapping[str, Mapping[str, Sequence[Any]]],
    anchors: Mapping[str, str],
) -> str:
    cards = []
    for feature in features:
        name = str(feature.get("name", ""))
        data = bins.get(name)
        if not data:
            continue
        chart = paired_histogram(
            [str(label) for label in data.get("labels", [])],
            [_number(v) or 0.0 for v in data.get("reference", [])],
            [_number(v) or 0.0 for v in data.get("current", [])],
            title=f"Reference vs current distribution of {name}",
        )
        state = "drifted" if feature.get("drifted") else "stable"
        cards.append(
            f'<section class="card {state}" id="{anchors[name]}"><h3><code>{_text(name)}</code> '
            f"{_drift_badge(bool(feature.get('drifted')))}</h3>{chart}</section>"
        )
    if not cards:
        return ""
    return "<h2>Reference vs current</h2><div class='grid'>" + "".join(cards) + "</div>"


def _performance(perf: Mapping[str, Any]) -> str:
    metric = str(perf.get("metric") or "performance")
    points = perf.get("points") or []
    parts = ["<h2>Performance over time</h2>"]
    if points:
        times = [_number(p.get("time")) for p in points]
        series = [
            Series(
                "realized",
                [
                    (t, _number(p.get("realized")))
                    for t, p in zip(times, points, strict=True)
                    if t is not None
                ],
            ),
            Series(
                "estimated (CBPE)",
                [
                    (t, _number(p.get("estimated")))
                    for t, p in zip(times, points, strict=True)
                    if t is not None
                ],
                dashed=True,
            ),
        ]
        parts.append(
            line_chart(
                series,
                title=f"{metric} over time, realized and estimated",
                threshold=_number(perf.get("threshold")),
                y_label=metric,
            )
        )
    latest = perf.get("latest")
    if isinstance(latest, Mapping):
        parts.append(_performance_table(latest))
    if len(parts) == 1:
        parts.append("<p class='meta'>No performance data yet.</p>")
    return "".join(parts)


def _performance_table(latest: Mapping[str, Any]) -> str:
    realized = latest.get("realized") or {}
    intervals = latest.get("intervals") or {}
    slo = latest.get("slo") or {}
    estimated = latest.get("estimated") or {}
    est_metrics = estimated.get("metrics", {}) if isinstance(estimated, Mapping) else {}
    rows = []
    for name in sorted(set(realized) | set(est_metrics)):
        interval = intervals.get(name) or {}
        band = (
            f"{_fmt(interval.get('low'))} \u2013 {_fmt(interval.get('high'))}" if interval else ""
        )
        status = slo.get(name) or {}
        if status.get("breached") is True:
            verdict = f'<span class="badge bad">breached ({_fmt(status.get("threshold"))})</span>'
        elif status.get("breached") is False:
            verdict = f'<span class="badge good">met ({_fmt(status.get("threshold"))})</span>'
        else:
            verdict = "\u2013"
        rows.append(
            f"<tr><td>{_text(name)}</td><td class='num'>{_fmt(realized.get(name))}</td>"
            f"<td class='num'>{band}</td><td class='num'>{_fmt(est_metrics.get(name))}</td>"
            f"<td>{verdict}</td></tr>"
        )
    coverage = _pct(latest.get("label_coverage"))
    note = ""
    if isinstance(estimated, Mapping) and estimated.get("limitation"):
        note = f"<p class='meta'>Estimate: {_text(estimated['limitation'])}</p>"
    return (
        f"<p class='meta'>Latest window: label coverage {coverage}, "
        f"{_fmt(latest.get('n_labelled'))} labelled rows.</p>"
        "<table><thead><tr><th>Metric</th><th>Realized</th><th>Interval</th>"
        "<th>Estimated</th><th>SLO</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="5">No labelled rows yet.</td></tr>')
        + "</tbody></table>"
        + note
    )


def _quality(findings: Sequence[Mapping[str, Any]]) -> str:
    if not findings:
        return ""
    items = []
    for finding in findings:
        feature = finding.get("feature")
        where = f"<code>{_text(feature)}</code>: " if feature is not None else ""
        detail = f" ({_text(finding['detail'])})" if finding.get("detail") else ""
        items.append(
            f"<li>{where}{_text(finding.get('signal', ''))} {_fmt(finding.get('value'))}"
            f" (reference {_fmt(finding.get('reference'))}){detail}</li>"
        )
    return "<h2>Data quality</h2><ul>" + "".join(items) + "</ul>"


def render_model_page(data: Mapping[str, Any]) -> str:
    """The page of one model version (shape in the module docstring)."""
    report = data.get("report")
    if not isinstance(report, Mapping):
        raise ValueError("render_model_page needs data['report'], a DriftReport.to_dict()")
    model, version = str(report.get("model", "")), str(report.get("version", ""))
    features = sorted(
        report.get("features") or [],
        key=lambda f: (not f.get("drifted"), str(f.get("name", ""))),
    )
    bins = data.get("histograms") or {}
    anchors = {
        str(f.get("name", "")): f"feature-{i}"
        for i, f in enumerate(features)
        if str(f.get("name", "")) in bins
    }
    template = trace_link_template(data.get("trace_url"))
    # The headline counts input features as drift_share does: the prediction and
    # the dataset-level (multivariate, embedding) entries are listed, not counted.
    n_drifted = report.get("n_drifted")
    n_evaluated = report.get("n_evaluated")
    if n_drifted is None or n_evaluated is None:
        inputs = [f for f in features if not str(f.get("name", "")).startswith("__")]
        n_drifted, n_evaluated = sum(bool(f.get("drifted")) for f in inputs), len(inputs)
    summary = (
        f"{_drift_badge(report.get('dataset_drift'))} {_fmt(n_drifted)} of "
        f"{_fmt(n_evaluated)} features drifted ({_pct(report.get('drift_share'))})"
    )
    window = (
        f"Window {_text(format_time(_number(report.get('window_start'))))} \u2013 "
        f"{_text(format_time(_number(report.get('window_end'))))}, "
        f"{_fmt(report.get('n_samples'))} samples; generated "
        f"{_text(format_time(_number(report.get('generated_at'))))}"
    )
    back = _text(data.get("index_href") or "/")
    header = (
        f'<header><p class="meta"><a href="{back}">All models</a></p>'
        f"<h1>{_text(model)} <span class='meta'>version {_text(version)}</span></h1>"
        f"<p>{summary}</p><p class='meta'>{window}</p></header>"
    )
    sections = [
        "<h2>Drift by feature</h2>",
        _feature_rows(features, data.get("history") or {}, anchors, template),
        _quality(report.get("quality") or []),
        _histograms(features, bins, anchors),
    ]
    perf = data.get("performance")
    if isinstance(perf, Mapping):
        sections.append(_performance(perf))
    body = header + "<main>" + "".join(sections) + "</main>"
    return _page(f"{model} {version} \u2013 modeltrace", body)
