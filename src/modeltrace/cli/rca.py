"""``modeltrace rca``: a ranked root-cause explanation of one model, from a running service.

Reads the drift report, its history and the call statistics (errors by type,
latency) of ``modeltrace serve`` and prints the findings ranked by impact, each
with example trace ids rendered as links through ``MODELTRACE_TRACE_URL``. The
logic lives in ``modeltrace.drift.rca`` (analysis, rendering) and
``modeltrace.drift.rca_client`` (HTTP, exit codes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
Explain what is wrong with a model, for the engineer on call: drifted features and
data-quality breaks with their scores (and since when they drift), failed calls by
error type and the latency of the last period against the period as long before it,
ranked by impact, each with example trace ids. Trace ids become links when
MODELTRACE_TRACE_URL (or --trace-url) is a URL template with {trace_id}, e.g.
http://jaeger:16686/trace/{trace_id} or a Grafana Tempo explore URL.
"""

_EPILOG = """\
exit codes:
  0  analysis printed (with or without findings)
  2  invalid arguments (bad --since, unreadable or empty --token-file)
  3  the service cannot be reached (connection refused, DNS, timeout)
  4  authentication failed (401/403: pass or fix --token-file)
  5  unknown model or version
  6  unexpected answer from the service (not the modeltrace API)

example:
  MODELTRACE_TRACE_URL='http://jaeger:16686/trace/{trace_id}' \\
    modeltrace rca --url http://modeltrace:4318 --model churn --since 1h
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rca",
        help="ranked root-cause explanation of a model (drift, data quality, errors, latency)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        required=True,
        metavar="URL",
        help="base URL of modeltrace serve, e.g. http://127.0.0.1:4318",
    )
    parser.add_argument("--model", required=True, metavar="M", help="model name")
    parser.add_argument(
        "--version",
        default=None,
        metavar="V",
        help="model version (default: the most recently seen version)",
    )
    parser.add_argument(
        "--since",
        default="1h",
        metavar="DURATION",
        help="period analysed, compared with the period as long before it "
        "(e.g. 15m, 1h, 1h30m, 2d; default: 1h)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="F",
        help="file holding the service's bearer token (modeltrace serve --auth-token-file)",
    )
    parser.add_argument(
        "--trace-url",
        default=None,
        metavar="TEMPLATE",
        help="trace link template with {trace_id} (default: $MODELTRACE_TRACE_URL)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for tools",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="timeout of each request to the service (default: 10)",
    )
    parser.set_defaults(func=run)


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"--token-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"--token-file {path}: not UTF-8 text") from None
    if not token:
        raise ValueError(f"--token-file {path} is empty")
    return token


def run(args: argparse.Namespace) -> int:
    from modeltrace.drift.rca import analyze, render_text, to_dict
    from modeltrace.drift.rca_client import RcaError, ServiceClient, collect_evidence
    from modeltrace.drift.service.config import parse_duration

    try:
        since = parse_duration(args.since)
        token = _read_token(args.token_file) if args.token_file is not None else None
        client = ServiceClient(args.url, token=token, timeout=args.timeout)
    except ValueError as exc:
        print(f"modeltrace rca: {exc}", file=sys.stderr)
        return 2
    if args.trace_url is not None and "{trace_id}" not in args.trace_url:
        print("modeltrace rca: --trace-url must contain {trace_id}", file=sys.stderr)
        return 2
    try:
        evidence = collect_evidence(client, args.model, args.version, since)
    except RcaError as exc:
        print(f"modeltrace rca: {exc}", file=sys.stderr)
        return exc.exit_code
    analysis = analyze(evidence)
    if args.format == "json":
        print(json.dumps(to_dict(analysis, args.trace_url), indent=2, allow_nan=False))
    else:
        sys.stdout.write(render_text(analysis, args.trace_url))
    return 0
