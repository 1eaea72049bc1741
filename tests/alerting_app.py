"""An instrumented app for the alerting end-to-end test: ``configure()`` + ``@monitor`` + OTLP.

Run as ``python tests/alerting_app.py --endpoint http://127.0.0.1:PORT --calls N ...``.
It sets modeltrace up the way an application does (``modeltrace.configure`` with
the OTLP/HTTP exporter towards a collector), calls a ``@modeltrace.monitor``
decorated predict function on seeded batches whose feature ``--drift-feature``
is shifted by ``--shift`` standard deviations, lets every ``--fail-every``-th
call raise ``TimeoutError``, and prints one JSON line per call with the trace
id that call produced (read inside the call from the current span) and whether
it failed. It flushes and shuts the exporter down before exiting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import numpy as np
from opentelemetry import trace

os.environ.setdefault("MODELTRACE_SAMPLE_RATE", "1")

import modeltrace

FEATURES = ("amount", "age", "tenure")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="OTLP/HTTP base URL of the collector")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--version", default="2")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift-feature", default="amount", choices=FEATURES)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--fail-every", type=int, default=0, help="0: never fail")
    args = parser.parse_args()

    handle = modeltrace.configure(
        service_name="fraud-api",
        endpoint=args.endpoint,
        protocol="http/protobuf",
        schedule_delay_millis=100,
        metric_readers=[],  # the collector hop in the test relays traces only
    )
    produced: list[dict[str, object]] = []
    call_number = 0

    @modeltrace.monitor(
        model=args.model, version=args.version, feature_names=list(FEATURES), sample_rate=1.0
    )
    def predict(batch: np.ndarray) -> np.ndarray:
        context = trace.get_current_span().get_span_context()
        failing = args.fail_every > 0 and call_number % args.fail_every == 0
        produced.append({"trace_id": f"{context.trace_id:032x}", "failed": failing})
        if failing:
            raise TimeoutError("feature store did not answer")
        return (batch[:, 0] > 1.0).astype(np.int64)

    rng = np.random.default_rng(args.seed)
    shift = np.zeros(len(FEATURES))
    shift[FEATURES.index(args.drift_feature)] = args.shift
    for call_number in range(1, args.calls + 1):  # noqa: B007 (read by predict)
        batch = rng.normal(0.0, 1.0, size=(args.rows, len(FEATURES))) + shift
        with contextlib.suppress(TimeoutError):
            predict(batch)
    flushed = handle.force_flush(10_000)
    handle.shutdown()
    for line in produced:
        print(json.dumps(line))
    print(json.dumps({"flushed": flushed, "calls": len(produced)}))
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
