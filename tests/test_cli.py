"""The ``modeltrace`` command: help and version for the program and every subcommand."""

from __future__ import annotations

import subprocess
import sys

import pytest

import modeltrace
from modeltrace.cli import build_parser, main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeltrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_matches_package() -> None:
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"modeltrace {modeltrace.__version__}"


def test_help_lists_every_command() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "usage: modeltrace" in proc.stdout
    parser = build_parser()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name in getattr(action, "choices", {}) or {}:
            assert name in proc.stdout


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for action in subs:
        for name in action.choices:
            with pytest.raises(SystemExit) as exc:
                main([name, "--help"])
            assert exc.value.code == 0


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: modeltrace" in capsys.readouterr().out
