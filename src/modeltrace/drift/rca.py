"""Root-cause analysis of one model version: ranked findings for an on-call engineer.

``analyze(evidence)`` reads what ``modeltrace.drift.rca_client`` fetched from
the service (drift report, its history, call statistics of the period and the
one before) and returns an ``Analysis``: findings ranked by an impact score in
[0, 1], each with a one-line summary, details and example trace ids, plus what
was checked and found normal. ``render_text`` prints it, with trace ids turned
into links through ``MODELTRACE_TRACE_URL`` (a template with ``{trace_id}``, e.g.
``http://jaeger:16686/trace/{trace_id}``); ``to_dict`` is the JSON form.

Impact (how likely a finding explains a bad model; ties keep this order):
  * prediction drift (``__prediction__``): what users see, 0.60..0.95;
  * a feature's drift: 0.55..0.90, growing with how far the verdict is past its
    threshold (distance methods: ``(score - threshold) / threshold``; p-value
    methods: ``log10(threshold / p)``);
  * data-quality breaks (missing values up, values out of the reference range,
    unseen categories, a feature absent): 0.50..0.85 by the size of the change;
  * errors: 0.50..0.95 by the rise of the failed-call share against the previous
    period (+5 points or more is the top), with the error types and their change;
  * latency: 0.45..0.85 when p99 grew by half or more (x8 or more is the top).
Dataset-level entries (``__multivariate__``, ``__embedding__``) that drifted are
findings like features, slightly below them: they say "something moved" but not
what.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modeltrace.drift.html import TRACE_URL_ENV
from modeltrace.drift.rca_client import Evidence
from modeltrace.drift.statistics import METHODS
from modeltrace.semconv import EMBEDDING_FEATURE, MULTIVARIATE_FEATURE, PREDICTION_FEATURE

__all__ = [
    "TRACE_URL_ENV",
    "Analysis",
    "Finding",
    "analyze",
    "render_text",
    "to_dict",
    "trace_link",
]

MAX_TRACES_PER_FINDING = 3
# Below these, a change against the previous period is noise, not a finding.
ERROR_RATIO_RISE = 0.005  # +0.5 percentage point of failed calls
LATENCY_RATIO = 1.5  # p99 x1.5
_DATASET_LEVEL = frozenset({MULTIVARIATE_FEATURE, EMBEDDING_FEATURE})
_QUALITY_NAMES = {
    "missing_ratio_increase": "missing values up",
    "out_of_range": "values out of the reference range",
    "unseen_categories": "unseen categories",
    "no_valid_values": "every value missing",
    "absent": "feature absent",
    "unknown_features": "features unknown to the reference",
    "capped_features": "features over the cap",
    "embedding_projection_mismatch": "embeddings of another projection",
}


@dataclass
class Finding:
    """One possible cause, with what backs it."""

    kind: str  # prediction_drift | feature_drift | dataset_drift | data_quality | errors | latency
    subject: str
    impact: float
    summary: str
    details: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)


@dataclass
class Analysis:
    """The ranked findings of one model version over one period."""

    model: str
    version: str
    since_seconds: float
    generated_at: float
    context: list[str]
    findings: list[Finding]
    normal: list[str]
    notes: list[str]


# --- formatting helpers ---------------------------------------------------------


def _time(ts: Any) -> str:
    if not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _latency(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"


def _num(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.3g}"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# --- drift ----------------------------------------------------------------------


def _excess(entry: Mapping[str, Any]) -> float:
    """How far past its threshold a drifted verdict is (>= 0)."""
    method = METHODS.get(str(entry.get("method")))
    threshold = _finite(entry.get("threshold"))
    score = _finite(entry.get("score"))
    p_value = _finite(entry.get("p_value"))
    if method is not None and method.kind == "pvalue" and threshold and p_value is not None:
        return max(0.0, math.log10(threshold / max(p_value, 1e-300)))
    if threshold and score is not None:
        return max(0.0, (score - threshold) / abs(threshold))
    return 0.0


def _streak(history: Sequence[Mapping[str, Any]], name: str, method: str) -> tuple[int, int, Any]:
    """(consecutive drifted reports from the newest, reports with the feature, the
    report where the streak started)."""
    streak, seen, start = 0, 0, None
    broken = False
    for report in history:  # newest first
        entry = next(
            (
                f
                for f in report.get("features", [])
                if f.get("name") == name and f.get("method") == method
            ),
            None,
        )
        if entry is None:
            continue
        seen += 1
        if not broken and entry.get("drifted"):
            streak += 1
            start = report
        else:
            broken = True
    return streak, seen, start


def _drift_findings(
    drift: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None
) -> tuple[list[Finding], list[str]]:
    findings: list[Finding] = []
    quiet: list[str] = []
    joint: list[tuple[Mapping[str, Any], float]] = []
    for entry in drift.get("features", []):
        name = str(entry.get("name"))
        method = str(entry.get("method"))
        if not entry.get("drifted"):
            if entry.get("enough_data", True) and name not in _DATASET_LEVEL:
                quiet.append(name)
            continue
        strength = 1.0 - math.exp(-_excess(entry) / 2.0)
        if name in _DATASET_LEVEL:
            joint.append((entry, strength))
            continue
        if name == PREDICTION_FEATURE:
            kind, impact, label = "prediction_drift", 0.60 + 0.35 * strength, "predictions drifted"
        else:
            kind, impact, label = "feature_drift", 0.55 + 0.35 * strength, f"feature {name} drifted"
        details = [
            f"{_verdict(entry)}; {entry.get('n_current', 0)} rows vs "
            f"{entry.get('n_reference', 0)} reference rows"
        ]
        if history:
            streak, seen, start = _streak(history, name, method)
            if streak and start is not None:
                first_score = next(
                    (
                        f.get("score")
                        for f in start.get("features", [])
                        if f.get("name") == name and f.get("method") == method
                    ),
                    None,
                )
                qualifier = "at least " if streak == seen else ""
                details.append(
                    f"drifted in the last {streak} of {seen} reports, since {qualifier}"
                    f"{_time(start.get('generated_at'))} (score then {_num(first_score)})"
                )
        missing, ref_missing = entry.get("missing_ratio"), entry.get("reference_missing_ratio")
        if name not in _DATASET_LEVEL and isinstance(missing, (int, float)) and missing > 0:
            details.append(f"missing {_pct(missing)} (reference {_pct(ref_missing)})")
        findings.append(
            Finding(
                kind=kind,
                subject=name,
                impact=round(impact, 3),
                summary=label,
                details=details,
                trace_ids=[str(t) for t in entry.get("exemplar_trace_ids", [])][
                    :MAX_TRACES_PER_FINDING
                ],
            )
        )
    if joint:
        findings.append(_joint_finding(joint))
    return findings, quiet


def _verdict(entry: Mapping[str, Any]) -> str:
    method = str(entry.get("method"))
    verdict = f"{method} score {_num(entry.get('score'))}"
    p_value = entry.get("p_value")
    spec = METHODS.get(method)
    if spec is not None and spec.kind == "pvalue":
        return verdict + f", p-value {_num(p_value)} < {_num(entry.get('threshold'))}"
    verdict += f" >= threshold {_num(entry.get('threshold'))}"
    if isinstance(p_value, (int, float)):
        verdict += f" (p-value {_num(p_value)})"
    return verdict


def _joint_finding(entries: Sequence[tuple[Mapping[str, Any], float]]) -> Finding:
    """The drifted dataset-level entries (one per method) as one finding."""
    strength = max(s for _, s in entries)
    methods = ", ".join(str(e.get("method")) for e, _ in entries)
    trace_ids: list[str] = []
    for entry, _ in entries:
        for trace_id in entry.get("exemplar_trace_ids", []):
            if str(trace_id) not in trace_ids:
                trace_ids.append(str(trace_id))
    names = sorted({str(e.get("name")).strip("_") for e, _ in entries})
    return Finding(
        kind="dataset_drift",
        subject=",".join(names),
        impact=round(0.45 + 0.25 * strength, 3),
        summary=f"joint distribution of the features drifted ({methods})",
        details=[f"{str(e.get('name')).strip('_')}: {_verdict(e)}" for e, _ in entries],
        trace_ids=trace_ids[:MAX_TRACES_PER_FINDING],
    )


def _quality_findings(drift: Mapping[str, Any]) -> list[Finding]:
    exemplars = {
        str(f.get("name")): [str(t) for t in f.get("exemplar_trace_ids", [])]
        for f in drift.get("features", [])
    }
    findings = []
    for item in drift.get("quality", []):
        signal = str(item.get("signal"))
        feature = item.get("feature")
        value = _finite(item.get("value")) or 0.0
        reference = _finite(item.get("reference")) or 0.0
        if signal in ("absent", "no_valid_values"):
            impact = 0.85
        elif signal in ("unknown_features", "capped_features", "embedding_projection_mismatch"):
            impact = 0.35
        else:
            impact = 0.50 + 0.35 * min(1.0, max(0.0, value - reference) / 0.5)
        what = _QUALITY_NAMES.get(signal, signal.replace("_", " "))
        subject = str(feature) if feature is not None else "(dataset)"
        summary = f"data quality: {what}" + (f" in {feature}" if feature is not None else "")
        detail = f"{signal} = {_num(value)}"
        if item.get("reference") is not None:
            detail += f" (reference {_num(reference)})"
        if item.get("threshold") is not None:
            detail += f", threshold {_num(item.get('threshold'))}"
        details = [detail]
        if item.get("detail"):
            details.append(str(item["detail"]))
        findings.append(
            Finding(
                kind="data_quality",
                subject=subject,
                impact=round(impact, 3),
                summary=summary,
                details=details,
                trace_ids=exemplars.get(subject, [])[:MAX_TRACES_PER_FINDING],
            )
        )
    return findings


def _fold_quality(drifts: Sequence[Finding], quality: Sequence[Finding]) -> list[Finding]:
    """Quality findings of a drifted feature become details of its drift finding (they are
    the same symptom); the others stay findings. A feature absent or without any valid
    value stays a finding of its own: a broken pipeline, not a shifted distribution."""
    by_feature = {f.subject: f for f in drifts if f.kind in ("feature_drift", "prediction_drift")}
    kept = []
    for item in quality:
        target = by_feature.get(item.subject)
        if target is None or item.impact >= 0.85:
            kept.append(item)
            continue
        target.details.append(
            f"also {item.summary.removeprefix('data quality: ')}: " + ("; ".join(item.details))
        )
    return kept


# --- calls ------------------------------------------------------------------------


def _error_finding(current: Mapping[str, Any], previous: Mapping[str, Any]) -> Finding | str:
    ratio = _finite(current.get("error_ratio")) or 0.0
    errors = int(current.get("errors") or 0)
    calls = int(current.get("calls") or 0)
    before = _finite(previous.get("error_ratio")) if previous.get("calls") else None
    base = f"{errors} of {calls} calls failed ({_pct(ratio)})"
    compared = f"previous period {_pct(before)}" if before is not None else "no previous data"
    if errors == 0:
        return f"no failed calls ({compared})"
    rise = ratio - (before or 0.0)
    if rise < ERROR_RATIO_RISE:
        return f"{base}, {compared}: not rising"
    # Without a previous period a high error share may be the normal state: ranked lower.
    impact = 0.50 + (0.45 if before is not None else 0.30) * min(1.0, rise / 0.05)
    previous_types: Mapping[str, int] = previous.get("errors_by_type") or {}
    types = []
    for name, count in (current.get("errors_by_type") or {}).items():
        earlier = previous_types.get(name)
        change = f"previous {earlier}" if earlier else "new"
        types.append(f"{name} {count} ({change})")
    examples: Mapping[str, Sequence[str]] = (current.get("examples") or {}).get("errors") or {}
    trace_ids = [
        t for name in (current.get("errors_by_type") or {}) for t in examples.get(name, [])
    ]
    return Finding(
        kind="errors",
        subject=next(iter(current.get("errors_by_type") or {}), "errors"),
        impact=round(impact, 3),
        summary=f"errors up: {base}, {compared}",
        details=["by type: " + ", ".join(types)] if types else [],
        trace_ids=trace_ids[:MAX_TRACES_PER_FINDING],
    )


def _latency_finding(current: Mapping[str, Any], previous: Mapping[str, Any]) -> Finding | str:
    now = current.get("latency_seconds") or {}
    then = previous.get("latency_seconds") or {}
    p99, p99_before = _finite(now.get("p99")), _finite(then.get("p99"))
    quantiles = ", ".join(f"{q} {_latency(now.get(q))}" for q in ("p50", "p90", "p99"))
    if p99 is None:
        return "latency: no timed calls in the period"
    if p99_before is None or p99_before <= 0:
        return f"latency {quantiles} (no previous data to compare)"
    ratio = p99 / p99_before
    if ratio < LATENCY_RATIO:
        return f"latency {quantiles} (previous p99 {_latency(p99_before)})"
    impact = 0.45 + 0.40 * min(1.0, math.log2(ratio) / 3.0)
    slowest = (current.get("examples") or {}).get("slowest") or []
    before = ", ".join(f"{q} {_latency(then.get(q))}" for q in ("p50", "p90", "p99"))
    return Finding(
        kind="latency",
        subject="p99",
        impact=round(impact, 3),
        summary=f"latency up: p99 {_latency(p99)}, x{ratio:.1f} the previous period",
        details=[
            f"now {quantiles}; before {before}",
            "slowest calls: " + ", ".join(_latency(s.get("seconds")) for s in slowest),
        ],
        trace_ids=[str(s.get("trace_id")) for s in slowest][:MAX_TRACES_PER_FINDING],
    )


# --- analysis -----------------------------------------------------------------------


def analyze(evidence: Evidence, now: float | None = None) -> Analysis:
    """Rank what the evidence says about the model version (see the module docstring)."""
    findings: list[Finding] = []
    normal: list[str] = []
    context = [f"service {evidence.url}"]
    drift = evidence.drift
    if drift is not None:
        entries, quiet = _drift_findings(drift, evidence.history)
        findings.extend(entries)
        findings.extend(_fold_quality(entries, _quality_findings(drift)))
        context.append(
            f"drift window {_time(drift.get('window_start'))} .. {_time(drift.get('window_end'))}, "
            f"{drift.get('n_samples', 0)} rows; {drift.get('n_drifted', 0)} of "
            f"{drift.get('n_evaluated', 0)} features drifted (share "
            f"{_num(drift.get('drift_share'))}), dataset drift "
            f"{'YES' if drift.get('dataset_drift') else 'no'}"
        )
        if quiet:
            normal.append("no drift in " + ", ".join(quiet))
        if not drift.get("quality"):
            normal.append("no data-quality break")
    calls = evidence.calls
    if calls is not None:
        current = calls.get("current") or {}
        previous = calls.get("previous") or {}
        rate = _finite(current.get("calls_per_second"))
        context.append(
            f"traffic {current.get('calls', 0)} calls"
            + (f" ({rate:.3g}/s)" if rate is not None else "")
            + f" since {_time(current.get('start'))}; previous period "
            + (
                f"{previous.get('calls', 0)} calls"
                if previous.get("complete", True)
                else f"{previous.get('calls', 0)} calls (partly before the kept history)"
            )
        )
        for outcome in (_error_finding(current, previous), _latency_finding(current, previous)):
            if isinstance(outcome, Finding):
                findings.append(outcome)
            else:
                normal.append(outcome)
    order = {kind: i for i, kind in enumerate(
        ("prediction_drift", "feature_drift", "data_quality", "errors", "latency", "dataset_drift")
    )}  # fmt: skip
    findings.sort(key=lambda f: (-f.impact, order.get(f.kind, 99), f.subject))
    return Analysis(
        model=evidence.model,
        version=evidence.version,
        since_seconds=evidence.since_seconds,
        generated_at=dt.datetime.now(tz=dt.timezone.utc).timestamp() if now is None else now,
        context=context,
        findings=findings,
        normal=normal,
        notes=list(evidence.notes),
    )


def trace_link(trace_id: str, template: str | None) -> str:
    """The trace id through the URL template (``{trace_id}``), or the bare id."""
    if template and "{trace_id}" in template:
        return template.replace("{trace_id}", trace_id)
    return trace_id


def _template(template: str | None) -> str | None:
    value = template if template is not None else os.environ.get(TRACE_URL_ENV)
    return value if value and "{trace_id}" in value else None


def render_text(analysis: Analysis, template: str | None = None) -> str:
    """The analysis as text; ``template`` defaults to ``$MODELTRACE_TRACE_URL``."""
    link = _template(template)
    lines = [
        f"Root-cause analysis of {analysis.model} version {analysis.version}: last "
        f"{_duration(analysis.since_seconds)} against the {_duration(analysis.since_seconds)} "
        f"before ({_time(analysis.generated_at)})",
    ]
    lines += [f"  {line}" for line in analysis.context]
    lines.append("")
    if analysis.findings:
        lines.append("Ranked findings (most likely cause first):")
        for rank, finding in enumerate(analysis.findings, start=1):
            lines.append(f"{rank:>2}. {finding.summary}  [impact {finding.impact:.2f}]")
            lines += [f"    {detail}" for detail in finding.details]
            for index, trace_id in enumerate(finding.trace_ids):
                prefix = "traces: " if index == 0 else "        "
                lines.append(f"    {prefix}{trace_link(trace_id, link)}")
    else:
        lines.append("No finding: no drift, data-quality break, error or latency rise.")
    if analysis.normal:
        lines.append("")
        lines.append("Checked and normal:")
        lines += [f"  - {item}" for item in analysis.normal]
    if analysis.notes:
        lines.append("")
        lines.append("Notes:")
        lines += [f"  - {note}" for note in analysis.notes]
    if analysis.findings and link is None:
        lines.append("")
        lines.append(
            f"Set {TRACE_URL_ENV} (e.g. http://jaeger:16686/trace/{{trace_id}}) for links."
        )
    return "\n".join(lines) + "\n"


def to_dict(analysis: Analysis, template: str | None = None) -> dict[str, Any]:
    """The JSON form; each finding's ``trace_links`` follow the template when set."""
    link = _template(template)
    out = asdict(analysis)
    for finding in out["findings"]:
        finding["trace_links"] = [trace_link(t, link) for t in finding["trace_ids"]] if link else []
    return out
