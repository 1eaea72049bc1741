"""Spans lost by the SDK's default BatchSpanProcessor vs configure()'s defaults, under a model load.

Each "request" is a server span, a feature-lookup span and a monitored
scikit-learn prediction of one row (tests/span_load.py); spans are exported
with the real OTLP/HTTP exporter to a receiver in a child process. The two
processors alternate for ``--runs`` rounds of ``--seconds`` each; the script
prints spans/s, spans produced and delivered, the drop rate, and for
modeltrace's processor the drops its ``modeltrace.sdk.spans.dropped`` metric
counted and the deepest queue seen.

    python benchmarks/span_drops.py [--seconds 6] [--runs 3] [--lookups 1] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from modeltrace.export import (
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SCHEDULE_DELAY_MILLIS,
)
from span_load import ReceiverProcess, run_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=1, help="feature-lookup spans per request")
    parser.add_argument("--model", choices=("logistic", "forest"), default="logistic")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=20.0,
        help="receiver answer delay (a Collector one network hop away); 0 for loopback only",
    )
    args = parser.parse_args()
    # The SDK logs "Queue full, dropping Span." for every drop; we count instead.
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)

    print(
        "SDK default BatchSpanProcessor: queue 2048, batch 512, delay 5000 ms; "
        f"modeltrace: queue {DEFAULT_MAX_QUEUE_SIZE}, batch {DEFAULT_MAX_EXPORT_BATCH_SIZE}, "
        f"delay {DEFAULT_SCHEDULE_DELAY_MILLIS} ms"
    )
    header = (
        f"{'processor':12s} {'spans/s':>8s} {'produced':>9s} {'delivered':>9s} "
        f"{'dropped':>8s} {'drop %':>7s} {'counted':>8s} {'max queue':>9s}"
    )
    print(f"receiver latency per export request: {args.latency_ms:g} ms")
    print(header)
    with ReceiverProcess(args.latency_ms) as receiver:
        for _ in range(args.runs):
            for processor in ("sdk-default", "modeltrace"):
                r = run_load(
                    processor, receiver.endpoint, args.seconds, args.model, lookups=args.lookups
                )
                counted = "-" if r.counted_drops is None else str(r.counted_drops)
                queue = "-" if r.max_queue is None else str(r.max_queue)
                print(
                    f"{processor:12s} {r.rate:8.0f} {r.produced:9d} {r.exported:9d} "
                    f"{r.dropped:8d} {100 * r.drop_share:6.1f}% {counted:>8s} {queue:>9s}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
