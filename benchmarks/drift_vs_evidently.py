"""Drift on the same rows: modeltrace's aggregator against Evidently's DataDriftPreset.

A reference of ``--reference-rows`` rows and current windows of ``--current-rows``
rows (each size in turn), ``--numeric`` numeric and ``--categorical`` categorical
features (50 in all by default), with drift injected in some of them (mean
shifts, variance changes, category-mix changes; the rest unchanged). Both sides
get exactly these rows:

* modeltrace: ``Reference.from_data`` once, then ``DriftAggregator.ingest`` of
  the current rows as serialized OTLP ``ExportTraceServiceRequest``s
  (``--rows-per-span`` rows per prediction span, ``--spans-per-request`` spans per
  request, built beforehand with the real protobuf classes: the client's cost, not
  timed), then ``evaluate()``;
* Evidently: ``Report`` with ``DataDriftPreset`` run on the reference and current
  DataFrames, in a *separate Python* (``--evidently-python`` or the environment
  variable ``MODELTRACE_BENCH_EVIDENTLY_PYTHON``: a virtualenv with ``evidently``,
  ``pandas`` < 3 (Evidently 0.7.23 fails to import with pandas 3) and ``pyarrow``;
  Evidently is not a dependency of this project). The
  rows travel through Parquet files; reading them is not timed, building the
  Evidently datasets and running the report is.

Prints the wall times, the ratio (target from issue 4: modeltrace >= 20x faster
than the Evidently report on the same rows) and an agreement table: which
features each side flags, against the truth of the injected drift.

Setup::

    python -m venv /tmp/evidently-venv
    /tmp/evidently-venv/bin/pip install evidently "pandas<3" pyarrow
    python benchmarks/drift_vs_evidently.py --evidently-python /tmp/evidently-venv/bin/python

The same file is the worker the Evidently python runs (``--worker``): that part
imports only pandas and Evidently, never modeltrace.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PYTHON = "MODELTRACE_BENCH_EVIDENTLY_PYTHON"
END_NS = 1_700_000_000_000_000_000
MODEL = "bench"
VERSION = "1"


# -- data (the project's environment) --


@dataclass(frozen=True)
class Dataset:
    """Reference and current rows plus the truth: which features drifted and how."""

    reference: Any  # pandas.DataFrame
    current: Any  # pandas.DataFrame
    numeric: list[str]
    categorical: list[str]
    truth: dict[str, str]  # feature -> "mean shift 0.5 sd", ... ("" = no drift)


def _draw(
    rng: Any, shape: int, loc: float, scale: float, n: int, shift: float = 0.0, widen: float = 1.0
) -> Any:
    """``n`` values of a normal (shape 0), shifted log-normal (1) or Poisson count (2)
    feature; ``shift`` moves the mean by that many sds, ``widen`` scales the spread."""
    import numpy as np

    if shape == 0:
        return rng.normal(loc + shift * scale, scale * widen, n)
    if shape == 1:
        base = rng.lognormal(0.0, 0.5 * widen, n)
        return loc + scale * (base + shift * 0.53)  # 0.53: sd of lognormal(0, 0.5)
    lam = 4.0 + abs(loc)
    return rng.poisson(lam, n).astype(np.float64) * widen + shift * np.sqrt(lam)


def make_dataset(
    reference_rows: int, current_rows: int, numeric: int, categorical: int, seed: int
) -> Dataset:
    """Numeric features (normal, log-normal, Poisson counts) and categorical ones
    (5-12 categories, Dirichlet mixes); drift in the first few of each kind."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    truth: dict[str, str] = {}
    numeric_names = [f"num_{i:02d}" for i in range(numeric)]
    categorical_names = [f"cat_{i:02d}" for i in range(categorical)]
    for i, name in enumerate(numeric_names):
        shape = i % 3
        loc = float(rng.uniform(-5, 5))
        scale = float(rng.uniform(0.5, 3))
        ref[name] = _draw(rng, shape, loc, scale, reference_rows)
        if i < 4:
            shift = (0.5, 1.0, 0.5, 1.0)[i]
            cur[name] = _draw(rng, shape, loc, scale, current_rows, shift=shift)
            truth[name] = f"mean shift {shift} sd"
        elif i in (4, 6):
            cur[name] = _draw(rng, shape, loc, scale, current_rows, widen=1.8)
            truth[name] = "variance x3.2"
        else:
            cur[name] = _draw(rng, shape, loc, scale, current_rows)
            truth[name] = ""
    for i, name in enumerate(categorical_names):
        k = 5 + i % 8
        labels = np.array([f"{name}_v{j}" for j in range(k)], dtype=object)
        p = rng.dirichlet(np.full(k, 2.0))
        ref[name] = rng.choice(labels, size=reference_rows, p=p)
        if i < 3:
            moved = (0.3, 0.2, 0.15)[i]
            q = p * (1 - moved)
            q[int(np.argmin(p))] += moved  # that much mass moves to the rarest category
            cur[name] = rng.choice(labels, size=current_rows, p=q)
            truth[name] = f"{moved:.0%} of mass moved"
        else:
            cur[name] = rng.choice(labels, size=current_rows, p=p)
            truth[name] = ""
    return Dataset(pd.DataFrame(ref), pd.DataFrame(cur), numeric_names, categorical_names, truth)


def make_requests(data: Dataset, rows_per_span: int, spans_per_request: int) -> list[bytes]:
    """The current rows as serialized OTLP requests of prediction spans (numeric
    features as double arrays, categorical ones as string arrays)."""
    import numpy as np
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    from modeltrace import semconv

    rng = np.random.default_rng(1)
    columns = {name: data.current[name].to_numpy().tolist() for name in data.current.columns}
    numeric = set(data.numeric)
    n = len(data.current)
    out: list[bytes] = []
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    in_request = 0
    for start in range(0, n, rows_per_span):
        stop = min(n, start + rows_per_span)
        span = scope.spans.add()
        span.name = f"predict {MODEL}"
        span.trace_id = rng.bytes(16)
        span.span_id = rng.bytes(8)
        span.start_time_unix_nano = END_NS - 1_000_000
        span.end_time_unix_nano = END_NS
        attrs = span.attributes
        attrs.add(key=semconv.MODEL_NAME, value=AnyValue(string_value=MODEL))
        attrs.add(key=semconv.MODEL_VERSION, value=AnyValue(string_value=VERSION))
        attrs.add(key=semconv.SAMPLE_RATE, value=AnyValue(double_value=1.0))
        indices = attrs.add(key=semconv.SAMPLE_INDICES).value.array_value.values
        indices.extend([AnyValue(int_value=i) for i in range(stop - start)])
        for name, values in columns.items():
            cells = attrs.add(key=f"{semconv.FEATURE_PREFIX}{name}").value.array_value.values
            if name in numeric:
                cells.extend([AnyValue(double_value=v) for v in values[start:stop]])
            else:
                cells.extend([AnyValue(string_value=v) for v in values[start:stop]])
        in_request += 1
        if in_request == spans_per_request or stop == n:
            out.append(request.SerializeToString())
            request = ExportTraceServiceRequest()
            scope = request.resource_spans.add().scope_spans.add()
            in_request = 0
    return out


def run_modeltrace(data: Dataset, requests: list[bytes], multivariate: bool) -> dict[str, Any]:
    """Time Reference.from_data, ingest of every request and evaluate()."""
    from modeltrace.drift import DriftAggregator, MultivariateSettings, Reference

    start = time.perf_counter()
    reference = Reference.from_data(data.reference, categorical=data.categorical)
    reference_s = time.perf_counter() - start
    settings = None if multivariate else MultivariateSettings(methods=())
    agg = DriftAggregator(":memory:", multivariate=settings)
    agg.set_reference(MODEL, VERSION, reference)
    start = time.perf_counter()
    for payload in requests:
        result = agg.ingest(payload)
        if result.rejected:
            raise RuntimeError(f"modeltrace rejected spans: {result.reason}")
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    report = agg.evaluate(MODEL, VERSION)
    evaluate_s = time.perf_counter() - start
    agg.close()
    features = {
        f.name: {"method": f.method, "score": f.score, "drifted": f.drifted}
        for f in report.features
        if f.name in data.truth
    }
    return {
        "reference_s": reference_s,
        "ingest_s": ingest_s,
        "evaluate_s": evaluate_s,
        "total_s": reference_s + ingest_s + evaluate_s,
        "rows": report.n_samples,
        "features": features,
    }


def run_evidently(python: str, data: Dataset, workdir: Path) -> dict[str, Any]:
    """Write the rows as Parquet and run the worker in the Evidently python."""
    ref_path, cur_path = workdir / "reference.parquet", workdir / "current.parquet"
    data.reference.to_parquet(ref_path)
    data.current.to_parquet(cur_path)
    spec = {
        "reference": str(ref_path),
        "current": str(cur_path),
        "numeric": data.numeric,
        "categorical": data.categorical,
    }
    completed = subprocess.run(
        [python, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the Evidently worker failed (exit {completed.returncode}):\n"
            + completed.stderr[-3000:]
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# -- the worker (the Evidently python: pandas + evidently only) --


def evidently_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Read the Parquet files, then time the DataDriftPreset report on them."""
    import importlib.metadata

    import pandas as pd

    reference = pd.read_parquet(spec["reference"])
    current = pd.read_parquet(spec["current"])
    version = importlib.metadata.version("evidently")
    try:
        from evidently import DataDefinition, Report
        from evidently import Dataset as EvidentlyDataset
        from evidently.presets import DataDriftPreset
    except ImportError:
        return _evidently_legacy(spec, reference, current, version)
    start = time.perf_counter()
    definition = DataDefinition(
        numerical_columns=spec["numeric"], categorical_columns=spec["categorical"]
    )
    ref_ds = EvidentlyDataset.from_pandas(reference, data_definition=definition)
    cur_ds = EvidentlyDataset.from_pandas(current, data_definition=definition)
    snapshot = Report([DataDriftPreset()]).run(cur_ds, ref_ds)
    seconds = time.perf_counter() - start
    features: dict[str, dict[str, Any]] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").rsplit(":", 1)[-1] != "ValueDrift":
            continue
        method = str(config.get("method", ""))
        threshold = float(config["threshold"])
        score = float(metric["value"])
        # Evidently's rule: tests (p-values) drift below the threshold, distances above.
        is_test = "p_value" in method or "test" in method.lower()
        drifted = score < threshold if is_test else score >= threshold
        features[config["column"]] = {"method": method, "score": score, "drifted": drifted}
    return {"version": version, "total_s": seconds, "features": features}


def _evidently_legacy(spec: dict[str, Any], reference: Any, current: Any, version: str) -> Any:
    """Evidently < 0.7: ``evidently.report.Report`` and ``ColumnMapping``."""
    from evidently import ColumnMapping  # type: ignore[attr-defined]
    from evidently.metric_preset import DataDriftPreset  # type: ignore[import-not-found]
    from evidently.report import Report  # type: ignore[import-not-found]

    start = time.perf_counter()
    mapping = ColumnMapping(
        numerical_features=spec["numeric"], categorical_features=spec["categorical"]
    )
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=reference, current_data=current, column_mapping=mapping)
    result = report.as_dict()
    seconds = time.perf_counter() - start
    features: dict[str, dict[str, Any]] = {}
    for metric in result["metrics"]:
        by_column = metric.get("result", {}).get("drift_by_columns")
        if not by_column:
            continue
        for name, column in by_column.items():
            features[name] = {
                "method": column["stattest_name"],
                "score": float(column["drift_score"]),
                "drifted": bool(column["drift_detected"]),
            }
    return {"version": version, "total_s": seconds, "features": features}


# -- output --


def agreement_table(data: Dataset, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """One line per feature that either side flags or that has injected drift."""
    lines = [
        f"  {'feature':8} {'injected drift':20} {'modeltrace':30} {'evidently':34}",
    ]
    agree = 0
    for name, truth in data.truth.items():
        mine, other = ours["features"].get(name), theirs["features"].get(name)
        mine_flag = bool(mine and mine["drifted"])
        other_flag = bool(other and other["drifted"])
        agree += mine_flag == other_flag
        if not (truth or mine_flag or other_flag):
            continue

        def cell(entry: dict[str, Any] | None, flag: bool) -> str:
            if entry is None:
                return "(not reported)"
            return f"{'DRIFT' if flag else 'ok':5} {entry['method']} {entry['score']:.3g}"

        lines.append(
            f"  {name:8} {truth or '-':20} {cell(mine, mine_flag):30} {cell(other, other_flag):34}"
        )
    lines.append(
        f"  same verdict on {agree}/{len(data.truth)} features "
        "(features without injected drift and flagged by neither are not listed)"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--evidently-python",
        default=os.environ.get(ENV_PYTHON),
        help=f"python of a virtualenv with evidently, pandas, pyarrow (or ${ENV_PYTHON})",
    )
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument(
        "--current-rows", default="10000,100000", help="comma-separated window sizes"
    )
    parser.add_argument("--numeric", type=int, default=35)
    parser.add_argument("--categorical", type=int, default=15)
    parser.add_argument("--rows-per-span", type=int, default=20)
    parser.add_argument("--spans-per-request", type=int, default=250)
    parser.add_argument(
        "--multivariate",
        action="store_true",
        help="keep modeltrace's default multivariate entries (Evidently's preset has none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(evidently_worker(json.loads(args.worker))))
        return
    if not args.evidently_python:
        sys.exit(
            "drift_vs_evidently: no Evidently python given. Evidently is not a dependency of "
            "modeltrace; install it in its own virtualenv and pass its python:\n"
            "  python -m venv /tmp/evidently-venv\n"
            '  /tmp/evidently-venv/bin/pip install evidently "pandas<3" pyarrow\n'
            "  python benchmarks/drift_vs_evidently.py "
            "--evidently-python /tmp/evidently-venv/bin/python\n"
            f"(or set {ENV_PYTHON})"
        )
    sizes = [int(s) for s in args.current_rows.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.reference_rows < 2:
        sys.exit("drift_vs_evidently: --current-rows and --reference-rows must be positive")
    results = []
    with tempfile.TemporaryDirectory(prefix="modeltrace-vs-evidently-") as tmp:
        for size in sizes:
            data = make_dataset(
                args.reference_rows, size, args.numeric, args.categorical, args.seed
            )
            requests = make_requests(data, args.rows_per_span, args.spans_per_request)
            ours = run_modeltrace(data, requests, args.multivariate)
            theirs = run_evidently(args.evidently_python, data, Path(tmp))
            results.append({"current_rows": size, "modeltrace": ours, "evidently": theirs})
            if args.json:
                continue
            print(
                f"reference {args.reference_rows:,} rows, current {size:,} rows, "
                f"{len(data.truth)} features ({len(data.numeric)} numeric, "
                f"{len(data.categorical)} categorical), Evidently {theirs['version']}"
            )
            print(
                f"  modeltrace {ours['total_s'] * 1000:8.0f} ms  (Reference.from_data "
                f"{ours['reference_s'] * 1000:.0f} ms, ingest of {len(requests)} OTLP "
                f"requests {ours['ingest_s'] * 1000:.0f} ms, evaluate "
                f"{ours['evaluate_s'] * 1000:.0f} ms)"
            )
            print(f"  evidently  {theirs['total_s'] * 1000:8.0f} ms  (DataDriftPreset report)")
            print(
                f"  ratio      {theirs['total_s'] / ours['total_s']:8.1f}x  "
                f"(target >= 20x; evaluate alone "
                f"{theirs['total_s'] / ours['evaluate_s']:.0f}x)"
            )
            print("\n".join(agreement_table(data, ours, theirs)))
            print()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
