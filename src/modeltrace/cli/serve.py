"""``modeltrace serve``: run the drift aggregator service (OTLP receivers, API, /metrics).

Flags are generated from the service's option table
(:data:`modeltrace.drift.service.config.OPTIONS`); each has an environment
variable ``MODELTRACE_SERVE_<NAME>`` and may also come from ``--config FILE``
(TOML or JSON). Precedence: flag > environment > config file > default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modeltrace.drift.service.config import ENV_PREFIX, OPTIONS

_DESCRIPTION = """\
Run the drift aggregator: receives prediction spans over OTLP/HTTP (POST /v1/traces,
protobuf or JSON, gzip or not) and OTLP/gRPC (TraceService/Export), compares them with
the uploaded references and serves drift reports (/api/v1/...), Prometheus metrics
(/metrics) and probes (/healthz, /readyz). An export is acknowledged only once it is
committed to the store, so a crash loses nothing acknowledged.
"""

_EPILOG = f"""\
Every option can also be set by an environment variable {ENV_PREFIX}<OPTION>
(e.g. {ENV_PREFIX}STORE, {ENV_PREFIX}AUTH_TOKEN_FILE) or in --config FILE
(TOML or JSON; keys are option names, optionally under a [serve] table).
Precedence: flag > environment variable > config file > default.
Durations: 30s, 15m, 1h, 1h30m, 2d. Sizes: bytes or KiB, MiB, GiB.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the drift aggregator service (OTLP in, drift API and metrics out)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"TOML or JSON file of options (env: {ENV_PREFIX}CONFIG)",
    )
    for spec in OPTIONS:
        default = f"default: {spec.default}" if spec.default is not None else "default: unset"
        parser.add_argument(
            spec.flag,
            dest=spec.name,
            default=None,
            metavar=spec.metavar,
            help=f"{spec.help} ({default}; env: {spec.env})",
        )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modeltrace.drift.service.auth import AuthTokenError
    from modeltrace.drift.service.config import ConfigError, resolve

    flags = {spec.name: getattr(args, spec.name, None) for spec in OPTIONS}
    try:
        config = resolve(flags, config_file=args.config)
    except ConfigError as exc:
        print(f"modeltrace serve: error: {exc}", file=sys.stderr)
        return 2
    from modeltrace.drift.service.runner import run_service
    from modeltrace.drift.store import StoreError

    try:
        return run_service(config)
    except (AuthTokenError, StoreError) as exc:
        print(f"modeltrace serve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"modeltrace serve: error: {exc}", file=sys.stderr)
        return 1
