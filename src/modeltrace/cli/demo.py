"""``modeltrace demo``: train, serve, drift and watch, on 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo (model, API, drifting traffic, drift table)",
        description=(
            "Train a small scikit-learn credit model, serve it with the FastAPI "
            "integration on 127.0.0.1, send it HTTP traffic that drifts part-way, feed "
            "every prediction span to an embedded drift aggregator and show the drift "
            "table as it changes. Needs the 'fastapi' and 'sklearn' extras "
            "(pip install 'modeltrace[all]'). Set OTEL_EXPORTER_OTLP_ENDPOINT to also "
            "send the spans to a collector."
        ),
    )
    parser.add_argument(
        "--duration", type=_positive, default=45.0, help="seconds of traffic (default 45)"
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="port of the demo API (default: a free port)"
    )
    parser.add_argument(
        "--no-drift", dest="drift", action="store_false", help="send traffic without drift"
    )
    parser.add_argument(
        "--rate", type=_positive, default=40.0, help="requests per second (default 40)"
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=Path("modeltrace-demo.db"),
        help="SQLite store of the aggregator, replaced at start (default modeltrace-demo.db)",
    )
    parser.add_argument(
        "--label-delay",
        type=_positive,
        default=None,
        help="seconds before the true label of a prediction arrives (default: duration/8, 1..5)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from modeltrace.demo.run import DemoOptions, run

    return run(
        DemoOptions(
            duration=args.duration,
            port=args.port,
            drift=args.drift,
            store=args.store,
            rate=args.rate,
            label_delay=args.label_delay,
        )
    )
