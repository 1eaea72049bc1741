"""Decorated functions keep their types for mypy (ParamSpec): typed use passes, misuse fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).with_name("typing_example.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def _mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(cache),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={"MYPYPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )


def test_typed_example_passes_and_misuse_is_caught(tmp_path: Path) -> None:
    ok = _mypy(EXAMPLE, tmp_path / "cache")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad_example.py"
    bad.write_text(
        EXAMPLE.read_text()
        + '\nwrong: str = predict([{"score": 0.7}])\npredict("not rows", threshold="x")\n'
    )
    result = _mypy(bad, tmp_path / "cache")
    assert result.returncode == 1
    assert 'Incompatible types in assignment (expression has type "list[bool]"' in result.stdout
    assert 'Argument "threshold" to "predict" has incompatible type "str"' in result.stdout


def test_the_package_type_checks(tmp_path: Path) -> None:
    # modeltrace ships py.typed: its own code must pass mypy (pyproject's [tool.mypy]).
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "src/modeltrace"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SRC.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
