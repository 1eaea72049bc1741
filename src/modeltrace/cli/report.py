"""``modeltrace report``: the current drift report of a model, from an aggregator store.

The store is opened read-only (safe next to a running ``modeltrace serve`` or an
embedded aggregator): windows are loaded, unapplied requests of the inbox are
replayed in memory, and each version with a reference is evaluated. Output is
a readable table or JSON (one report object with ``--version``, else a list),
or with ``--format html`` the self-contained HTML page the service serves for
one model version (drift table, histograms, performance over time), written to
``-o FILE`` or printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

COLUMNS = (
    "feature",
    "method",
    "score",
    "threshold",
    "drifted",
    "n",
    "missing",
    "exemplar trace id",
)


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "n/a"
    return f"{value:.{digits}g}"


def _time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return [line.rstrip() for line in lines]


def format_report(report: Any) -> str:
    """A ``DriftReport`` as a readable text table with a header and findings."""
    verdict = "DATASET DRIFT" if report.dataset_drift else "no dataset drift"
    lines = [
        f"model {report.model}  version {report.version or '(none)'}",
        f"window {_time(report.window_start)} .. {_time(report.window_end)}  "
        f"samples {report.n_samples}",
        f"drifted {report.n_drifted}/{report.n_evaluated} features "
        f"(share {report.drift_share:.2f}, threshold {report.drift_share_threshold:.2f}): "
        f"{verdict}",
        "",
    ]
    rows: list[list[str]] = [list(COLUMNS)]
    for entry in report.features:
        rows.append(
            [
                entry.name,
                entry.method,
                _number(entry.score),
                _number(entry.threshold),
                ("YES" if entry.drifted else "no") if entry.enough_data else "too few",
                str(entry.n_current),
                f"{entry.missing_ratio:.1%}",
                entry.exemplar_trace_ids[0] if entry.exemplar_trace_ids else "-",
            ]
        )
    if len(rows) == 1:
        lines.append("no production data in the window yet")
    else:
        lines.extend(_table(rows))
    if report.quality:
        lines.append("")
        lines.append("data quality:")
        for finding in report.quality:
            where = finding.feature or "(all)"
            detail = f" - {finding.detail}" if finding.detail else ""
            lines.append(f"  {where}: {finding.signal} {_number(finding.value)}{detail}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from modeltrace.drift.aggregator import DriftAggregator, UnknownModelError
    from modeltrace.drift.store import StoreError

    try:
        agg = DriftAggregator(args.store, read_only=True)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "html":
        try:
            return _write_html(agg, args)
        finally:
            agg.close()
    try:
        if args.version is not None:
            versions = [args.version]
        else:
            known = [m for m in agg.models() if m["model"] == args.model]
            versions = [v["version"] for m in known for v in m["versions"]]
            if not versions:
                print(f"error: unknown model {args.model!r} in {args.store}", file=sys.stderr)
                return 1
        reports = []
        for version in versions:
            try:
                reports.append(agg.evaluate(args.model, version))
            except UnknownModelError as exc:
                if args.version is not None:
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                print(f"note: {exc}", file=sys.stderr)
    finally:
        agg.close()
    if args.format == "json":
        payload: Any = (
            reports[0].to_dict() if args.version is not None else [r.to_dict() for r in reports]
        )
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        print("\n\n".join(format_report(r) for r in reports))
    return 0


def _write_html(agg: Any, args: argparse.Namespace) -> int:
    from modeltrace.drift.aggregator import UnknownModelError
    from modeltrace.drift.report_pages import model_page

    version = args.version
    if version is None:
        known = [
            v["version"] for m in agg.models() if m["model"] == args.model for v in m["versions"]
        ]
        if len(known) != 1:
            what = "unknown model" if not known else "several versions: pick one with --version"
            print(f"error: {what} ({args.model!r} in {args.store})", file=sys.stderr)
            return 1
        version = known[0]
    try:
        page = model_page(agg, args.model, version, index_href=None)
    except UnknownModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(page)
        return 0
    with open(args.output, "w", encoding="utf-8") as fh:
        fh.write(page)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="print the current drift report of a model from an aggregator store",
        description=(
            "Print the current drift report of a model: per feature the method, score, "
            "threshold, verdict, sample size, missing ratio and an exemplar trace id. The store "
            "is opened read-only, so this is safe next to a running aggregator."
        ),
        epilog="example: modeltrace report --store modeltrace.db --model churn --version 3",
    )
    parser.add_argument(
        "--store", default="modeltrace.db", metavar="PATH", help="store file (default: %(default)s)"
    )
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--version", default=None, help="model version (default: every version)")
    parser.add_argument(
        "--format",
        choices=("table", "json", "html"),
        default="table",
        help=(
            "output format (default: %(default)s); json: one report with --version, else a "
            "list; html: the self-contained page of one version"
        ),
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FILE",
        help="write the html page to FILE (default: standard output)",
    )
    parser.set_defaults(func=run)
