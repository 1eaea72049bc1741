"""The ``modeltrace`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the
function that runs it (taking the parsed ``argparse.Namespace`` and returning
an exit code). Modules keep heavy imports inside their run function so that
``modeltrace --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from modeltrace import __version__

# Subcommand modules, in the order --help lists them.
_COMMAND_MODULES: tuple[str, ...] = ("demo", "serve", "reference", "report", "rca")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeltrace",
        description="OpenTelemetry instrumentation for ML model serving, with drift monitoring.",
    )
    parser.add_argument("--version", action="version", version=f"modeltrace {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"modeltrace.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
