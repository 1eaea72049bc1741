"""Per-call overhead of modeltrace's ``monitor``, as ratios measured in one run.

Prints the median per-call cost of: a bare function; a ``functools.wraps``
pass-through; a hand-written OpenTelemetry span + histogram + counter;
``monitor`` with capture off; with one captured row of 20 features (dict and
numpy); a 1000x50 numpy batch with ``max_rows=8``; and ``monitor`` disabled.
Then the ratios the SDK targets (issue 2). All cases share one SDK
TracerProvider (no span processor: spans are fully built, nothing is exported,
so export threads add no noise) and one MeterProvider with an in-memory reader.

    python benchmarks/overhead.py [--rounds 15] [--calls 2000]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import modeltrace
from modeltrace import runtime, semconv
from modeltrace.settings import load_settings


def model_fn(x: Any) -> int:
    return 1


def build_cases(tp: TracerProvider, mp: MeterProvider) -> dict[str, tuple[Callable[..., Any], Any]]:
    tracer = tp.get_tracer("handwritten")
    meter = mp.get_meter("handwritten")
    histogram = meter.create_histogram("hand.duration", unit="s")
    counter = meter.create_counter("hand.calls")
    attrs = {semconv.MODEL_NAME: "m", semconv.MODEL_VERSION: "1"}

    def handwritten(x: Any) -> int:
        start = time.perf_counter()
        with tracer.start_as_current_span("predict m", kind=SpanKind.INTERNAL, attributes=attrs):
            result = model_fn(x)
        histogram.record(time.perf_counter() - start, attrs)
        counter.add(1, attrs)
        return result

    @functools.wraps(model_fn)
    def passthrough(*args: Any, **kwargs: Any) -> Any:
        return model_fn(*args, **kwargs)

    row = {f"feature_{i}": float(i) for i in range(20)}
    row_np = np.arange(20, dtype=float)
    batch = np.random.default_rng(0).normal(size=(1000, 50))
    no_capture = modeltrace.monitor(
        model="m", version="1", capture_features=False, capture_predictions=False
    )(model_fn)
    capture = modeltrace.monitor(model="m", version="1", sample_rate=1.0)(model_fn)
    batched = modeltrace.monitor(model="m", version="1", sample_rate=1.0, max_rows=8)(model_fn)
    return {
        "bare function": (model_fn, row),
        "functools.wraps pass-through": (passthrough, row),
        "hand-written span+histogram+counter": (handwritten, row),
        "monitor, capture off": (no_capture, row),
        "monitor, 1 row x 20 features (dict)": (capture, row),
        "monitor, 1 row x 20 features (numpy)": (capture, row_np),
        "monitor, 1000x50 numpy batch, max_rows=8": (batched, batch),
    }


def time_block(func: Callable[..., Any], arg: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func(arg)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    tp = TracerProvider()
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    runtime.install(tp, mp, load_settings())
    cases = build_cases(tp, mp)
    # MODELTRACE_DISABLED=true when the decorator is applied (the documented switch)
    os.environ["MODELTRACE_DISABLED"] = "true"
    runtime.reset()
    disabled = modeltrace.monitor(model="m", version="1")(model_fn)
    del os.environ["MODELTRACE_DISABLED"]
    runtime.install(tp, mp, load_settings())
    samples: dict[str, list[float]] = {name: [] for name in cases}
    samples["monitor, MODELTRACE_DISABLED"] = []
    for func, arg in cases.values():  # warm-up
        time_block(func, arg, 200)
    for _ in range(args.rounds):
        runtime.install(tp, mp, load_settings())
        for name, (func, arg) in cases.items():
            samples[name].append(time_block(func, arg, args.calls))
        samples["monitor, MODELTRACE_DISABLED"].append(time_block(disabled, {"a": 1}, args.calls))

    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'case':45s} {'median us/call':>15s}")
    for name, value in median.items():
        print(f"{name:45s} {value * 1e6:15.2f}")

    def ratio(a: str, b: str) -> float:
        return median[a] / median[b]

    hand = "hand-written span+histogram+counter"
    targets = [
        ("monitor capture off / hand-written span", ratio("monitor, capture off", hand), 1.3),
        (
            "1 captured row (dict) / hand-written span",
            ratio("monitor, 1 row x 20 features (dict)", hand),
            1.8,
        ),
        (
            "1 captured row (numpy) / hand-written span",
            ratio("monitor, 1 row x 20 features (numpy)", hand),
            1.8,
        ),
        (
            "1000x50 batch / 1 row (dict)",
            ratio(
                "monitor, 1000x50 numpy batch, max_rows=8", "monitor, 1 row x 20 features (dict)"
            ),
            1.3,
        ),
        (
            "disabled / functools.wraps pass-through",
            ratio("monitor, MODELTRACE_DISABLED", "functools.wraps pass-through"),
            3.0,
        ),
    ]
    print()
    print(f"{'ratio':45s} {'measured':>9s} {'target':>7s}")
    for name, value, target in targets:
        flag = "ok" if value <= target else "MISSED"
        print(f"{name:45s} {value:9.2f} {target:7.1f}  {flag}")


if __name__ == "__main__":
    main()
