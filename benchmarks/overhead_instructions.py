"""Per-call overhead of ``monitor`` in CPU instructions (valgrind callgrind): noise-free ratios.

Wall-clock medians (benchmarks/overhead.py) move by tens of percent when other
processes share the cores; instruction counts do not. This script re-runs
itself under ``valgrind --tool=callgrind`` with a dump before every call of
``os.getppid`` (a C function nothing else calls on these paths), runs each case
of overhead.py ``--calls`` times between two such markers, and prints
instructions per call and the ratios issue 2 targets.

    python benchmarks/overhead_instructions.py [--calls 300]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

MARKER = "os_getppid"
SDK_SCALARS = "SDK: attributes, 20 scalars"
SDK_ARRAYS = "SDK: attributes, 50 arrays of 8 floats"
SDK_EMPTY = "SDK: attributes, empty"
SDK_HISTOGRAM = "SDK: one histogram record, 2 attributes"
FLOOR = "floor: 1 row (dict) span+records, no checks"
_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def callgrind(script: str, args: list[str]) -> tuple[str, list[int]]:
    """Run ``python script *args`` under callgrind, dumping before each ``os.getppid()``.

    Returns the script's stdout and the instructions of each dump (``dump_totals``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        completed = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--dump-before={MARKER}",
                f"--callgrind-out-file={out}",
                sys.executable,
                script,
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return completed.stdout, dump_totals(out)


def dump_totals(out: str) -> list[int]:
    """Instructions of each callgrind dump ``out.1``, ``out.2``, ... in order (0 if none)."""
    dumps = sorted(glob.glob(out + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    totals = []
    for path in dumps:
        with open(path) as handle:
            match = _TOTALS.search(handle.read())
        totals.append(int(match.group(1)) if match else 0)
    return totals


def run_cases(calls: int) -> list[str]:
    """Inside valgrind: warm every case up, then run each between two getppid markers."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy as np
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from overhead import build_cases, model_fn

    import modeltrace
    from modeltrace import runtime
    from modeltrace.settings import load_settings

    tp = TracerProvider()
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    runtime.install(tp, mp, load_settings())
    cases: dict[str, tuple[Any, Any]] = build_cases(tp, mp)
    os.environ["MODELTRACE_DISABLED"] = "true"
    runtime.reset()
    cases["monitor, MODELTRACE_DISABLED"] = (
        modeltrace.monitor(model="m", version="1")(model_fn),
        {"a": 1},
    )
    del os.environ["MODELTRACE_DISABLED"]
    runtime.install(tp, mp, load_settings())
    small_batch = np.random.default_rng(1).normal(size=(8, 50))
    cases["monitor, 8x50 numpy batch"] = (
        modeltrace.monitor(model="m", version="1", sample_rate=1.0, max_rows=8)(model_fn),
        small_batch,
    )
    # What the OpenTelemetry SDK itself spends, for the same attribute values.
    scalars = {f"ml.feature.feature_{i}": float(i) for i in range(20)}
    arrays = {f"ml.feature.f{i}": small_batch[:, i].tolist() for i in range(50)}
    histogram = mp.get_meter("sdk-share").create_histogram("sdk.share")
    volume = {"ml.model.name": "m", "ml.model.version": "1"}
    cases[SDK_SCALARS] = (lambda a: BoundedAttributes(128, a, immutable=False), scalars)
    cases[SDK_ARRAYS] = (lambda a: BoundedAttributes(128, a, immutable=False), arrays)
    cases[SDK_EMPTY] = (lambda a: BoundedAttributes(128, a, immutable=False), None)
    cases[SDK_HISTOGRAM] = (lambda a: histogram.record(1.0, a), volume)
    cases[FLOOR] = (_floor_call(runtime.current(), model_fn), scalars_row())
    for func, arg in cases.values():
        for _ in range(50):
            func(arg)
    for func, arg in cases.values():
        os.getppid()
        for _ in range(calls):
            func(arg)
    os.getppid()
    return list(cases)


def scalars_row() -> dict[str, float]:
    return {f"feature_{i}": float(i) for i in range(20)}


def _floor_call(rt: Any, model_fn: Any) -> Any:
    """The one-row (dict) case written out by hand with public SDK calls only.

    Same span (name, kind, attributes in the same order) and the same metric
    records as ``monitor`` with one captured dict row of 20 numbers, but nothing
    checked or decided: no input detection, no privacy or type checks, no
    sampling, no nesting guard. What is left between this and monitor is
    modeltrace's own per-call work.
    """
    import random
    import time

    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind

    from modeltrace import semconv

    tracer, instruments = rt.tracer, rt.instruments
    base = {
        semconv.MODEL_NAME: "m",
        semconv.MODEL_VERSION: "1",
        semconv.MODEL_FRAMEWORK: "custom",
        semconv.MODEL_OPERATION: "predict",
    }
    volume = {semconv.MODEL_NAME: "m", semconv.MODEL_VERSION: "1"}
    metric = {**volume, semconv.MODEL_OPERATION: "predict"}
    keys = [semconv.FEATURE_PREFIX + name for name in scalars_row()]

    def floor(row: dict[str, float]) -> Any:
        parent = context.get_current()
        attributes = base.copy()
        attributes[semconv.PREDICTION_ID] = random.getrandbits(128).to_bytes(16, "big").hex()
        attributes[semconv.BATCH_SIZE] = 1
        attributes[semconv.SAMPLE_RATE] = 1.0
        attributes[semconv.SAMPLE_INDICES] = [0]
        attributes.update(zip(keys, row.values(), strict=True))
        span = tracer.start_span("predict m", parent, kind=SpanKind.INTERNAL, attributes=attributes)
        start = time.perf_counter()
        span_context = trace.set_span_in_context(span, parent)
        token = context.attach(span_context)
        result = model_fn(row)
        context.detach(token)
        span.set_attribute(semconv.PREDICTION_VALUE, result)
        span.end()
        instruments.duration.record(time.perf_counter() - start, metric, span_context)
        instruments.predictions.add(("m", "1"), 1)
        instruments.batch_size.record(1, volume, parent)
        instruments.prediction_value.record(result, volume, parent)
        return result

    return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print("\n".join(run_cases(args.calls)))
        return
    stdout, totals = callgrind(os.path.abspath(__file__), ["--inner", f"--calls={args.calls}"])
    names = [n for n in stdout.split("\n") if n]
    # dump k (1-based) holds what ran before marker k: dump 1 is start-up, dump k+1 case k.
    per_call = {name: totals[i + 1] / args.calls for i, name in enumerate(names)}
    print(f"{'case':45s} {'instructions/call':>18s}  ({args.calls} calls each)")
    for name, value in per_call.items():
        print(f"{name:45s} {value:18,.0f}")
    hand = per_call["hand-written span+histogram+counter"]
    one_row = per_call["monitor, 1 row x 20 features (dict)"]
    ratios = [
        ("monitor capture off / hand-written span", per_call["monitor, capture off"] / hand, 1.3),
        ("1 captured row (dict) / hand-written span", one_row / hand, 1.8),
        (
            "1 captured row (numpy) / hand-written span",
            per_call["monitor, 1 row x 20 features (numpy)"] / hand,
            1.8,
        ),
        (
            "1000x50 batch / 1 row (dict)",
            per_call["monitor, 1000x50 numpy batch, max_rows=8"] / one_row,
            1.3,
        ),
        (
            "1000x50 batch / 8x50 batch (same rows kept)",
            per_call["monitor, 1000x50 numpy batch, max_rows=8"]
            / per_call["monitor, 8x50 numpy batch"],
            1.3,
        ),
    ]
    print()
    print(f"{'ratio (instructions)':45s} {'measured':>9s} {'target':>7s}")
    for name, value, target in ratios:
        flag = "ok" if value <= target else "MISSED"
        print(f"{name:45s} {value:9.2f} {target:7.1f}  {flag}")
    empty = per_call[SDK_EMPTY]
    print()
    print("inside the OpenTelemetry SDK (validation of attribute values, one histogram record):")
    print(f"  per scalar attribute          {(per_call[SDK_SCALARS] - empty) / 20:10,.0f}")
    print(f"  per array element             {(per_call[SDK_ARRAYS] - empty) / 400:10,.0f}")
    print(f"  20 scalar features            {per_call[SDK_SCALARS] - empty:10,.0f}")
    print(f"  50 features x 8 rows          {per_call[SDK_ARRAYS] - empty:10,.0f}")
    print(f"  histogram record              {per_call[SDK_HISTOGRAM]:10,.0f}")
    floor = per_call[FLOOR]
    print()
    print(f"floor (same output by hand, nothing checked): {floor:,.0f} = {floor / hand:.2f}x")
    print(f"  modeltrace's own work, 1 row (dict)   {one_row - floor:10,.0f}")
    print(
        "  modeltrace's own work, 1 row (numpy)  "
        f"{per_call['monitor, 1 row x 20 features (numpy)'] - floor:10,.0f}"
    )


if __name__ == "__main__":
    main()
