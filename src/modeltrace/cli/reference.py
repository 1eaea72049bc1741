"""``modeltrace reference build``: a drift ``Reference`` from a CSV or Parquet file.

CSV is read with pandas when it is installed, else with the stdlib ``csv``
module (columns whose every non-empty cell is a number become numeric); Parquet
needs pyarrow. Large files show a progress bar on stderr. With ``--store`` the
reference is also installed for (model, version) in an aggregator store.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

# Files at least this large show a progress bar (when stderr is a terminal or forced).
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
CSV_CHUNK_ROWS = 50_000


class DataError(Exception):
    """A problem with the input data, reported as ``error: ...`` with exit code 2."""


class Progress:
    """A one-line progress bar on a stream (no-op when disabled)."""

    def __init__(self, label: str, total: float, enabled: bool, stream: IO[str] | None = None):
        self.label = label
        self.total = max(float(total), 1.0)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._last = 0.0

    def update(self, done: float, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        share = min(max(done / self.total, 0.0), 1.0)
        width = 30
        bar = "#" * int(share * width)
        self.stream.write(f"\r{self.label} [{bar:<{width}}] {share * 100:5.1f}%")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.total, force=True)
            self.stream.write("\n")
            self.stream.flush()


def _progress_enabled(path: Path, mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return path.stat().st_size >= PROGRESS_MIN_BYTES and sys.stderr.isatty()


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def read_csv_stdlib(path: Path, progress: Progress) -> dict[str, list[Any]]:
    """Columns of a CSV file with the stdlib: numbers where every non-empty cell parses."""
    read_chars = 0

    def counted(lines: IO[str]) -> Iterator[str]:
        nonlocal read_chars
        for line in lines:
            read_chars += len(line)
            yield line

    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(counted(fh))
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path} is empty") from None
        if len(set(header)) != len(header):
            raise DataError(f"{path} has duplicate column names")
        raw: list[list[str]] = [[] for _ in header]
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(header):
                if not row:
                    continue
                raise DataError(
                    f"{path}, line {line_number}: {len(row)} fields, the header has {len(header)}"
                )
            for column, cell in zip(raw, row, strict=True):
                column.append(cell)
            if line_number % 10_000 == 0:
                progress.update(read_chars)
    columns: dict[str, list[Any]] = {}
    for name, cells in zip(header, raw, strict=True):
        numbers = [math.nan if c.strip() == "" else _number(c) for c in cells]
        if all(n is not None for n in numbers):
            columns[name] = numbers
        else:
            columns[name] = [c if c != "" else None for c in cells]
    return columns


def read_csv_pandas(path: Path, progress: Progress) -> Any:
    import pandas as pd

    size = path.stat().st_size
    chunks = []
    with path.open("rb") as raw:
        reader = pd.read_csv(raw, chunksize=CSV_CHUNK_ROWS, low_memory=False)
        for chunk in reader:
            chunks.append(chunk)
            progress.update(min(raw.tell(), size))
    if not chunks:
        raise DataError(f"{path} has no rows")
    return pd.concat(chunks, ignore_index=True)


def read_parquet(path: Path, progress: Progress) -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'modeltrace[aggregator]'"
        ) from None
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from exc
    total = parquet.metadata.num_rows
    progress.total = max(float(total), 1.0)
    batches = []
    done = 0
    for batch in parquet.iter_batches(batch_size=65_536):
        batches.append(batch)
        done += batch.num_rows
        progress.update(done)
    table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def read_table(path: Path, progress_mode: str = "auto", use_pandas: bool | None = None) -> Any:
    """Read a CSV or Parquet file into columns (a DataFrame or a dict of columns)."""
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    progress = Progress(
        f"reading {path.name}", path.stat().st_size, _progress_enabled(path, progress_mode)
    )
    if suffix in (".parquet", ".pq"):
        table = read_parquet(path, progress)
    elif suffix in (".csv", ".csv.gz", ".txt"):
        if use_pandas is None:
            use_pandas = _has_pandas()
        if suffix == ".csv.gz" and not use_pandas:
            raise DataError("reading .csv.gz needs pandas")
        table = read_csv_pandas(path, progress) if use_pandas else read_csv_stdlib(path, progress)
    else:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .csv or .parquet")
    progress.finish()
    return table


def _column_names(table: Any) -> list[str]:
    return [str(c) for c in (table.columns if hasattr(table, "columns") else table.keys())]


def _split_names(text: str | None) -> list[str]:
    if not text:
        return []
    return [name.strip() for name in text.split(",") if name.strip()]


def _check_columns(path: Path, names: list[str], wanted: dict[str, list[str]]) -> None:
    available = set(names)
    for option, columns in wanted.items():
        missing = [c for c in columns if c not in available]
        if missing:
            raise DataError(
                f"{option}: column(s) {', '.join(map(repr, missing))} not in {path.name} "
                f"(columns: {', '.join(names)})"
            )


def _drop(table: Any, names: list[str]) -> Any:
    if not names:
        return table
    if hasattr(table, "drop"):
        return table.drop(columns=names)
    return {k: v for k, v in table.items() if k not in names}


def _score_column(table: Any, name: str) -> Any:
    """The ``--score`` column as floats in [0, 1] (the predicted class's probability)."""
    import numpy as np

    try:
        values = np.asarray(table[name], dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"--score: column {name!r} is not numeric ({exc})") from None
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise DataError(
            f"--score: column {name!r} must hold probabilities in [0, 1] "
            f"(found {finite.min():g} to {finite.max():g})"
        )
    return values


def build(args: argparse.Namespace, read: Callable[..., Any] = read_table) -> int:
    from modeltrace.drift.reference import Reference

    path = Path(args.data)
    try:
        table = read(path, args.progress)
        names = _column_names(table)
        categorical = _split_names(args.categorical)
        exclude = _split_names(args.exclude)
        score = getattr(args, "score", None)
        single = {
            "--prediction": [args.prediction],
            "--target": [args.target],
            "--score": [score],
        }
        _check_columns(
            path,
            names,
            {
                **{k: v for k, v in single.items() if v[0]},
                "--categorical": [c for c in categorical if c != args.prediction],
                "--exclude": exclude,
            },
        )
        scores = _score_column(table, score) if score else None
        table = _drop(table, exclude + ([score] if score else []))
        categorical_names = ["__prediction__" if c == args.prediction else c for c in categorical]
        reference = Reference.from_data(
            table,
            predictions=args.prediction,
            targets=args.target,
            categorical=categorical_names or None,
            bins=args.bins,
            top_k=args.top_k,
            scores=scores,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    output = Path(args.output)
    try:
        reference.save(output)
    except OSError as exc:
        print(f"error: cannot write {output}: {exc}", file=sys.stderr)
        return 2
    kinds = [f"{name} ({feature.kind})" for name, feature in reference.features.items()]
    print(
        f"wrote {output}: reference of {args.model}/{args.version} from {reference.n_rows} rows, "
        f"{len(kinds)} features: {', '.join(kinds)}"
    )
    if args.store:
        from modeltrace.drift.aggregator import DriftAggregator

        with DriftAggregator(args.store) as agg:
            agg.set_reference(args.model, args.version, reference)
        print(f"installed in {args.store} for {args.model}/{args.version}")
    else:
        print(
            "upload it to a running aggregator with:\n"
            f"  curl -X PUT --data-binary @{output} "
            f"http://127.0.0.1:4318/api/v1/models/{args.model}/versions/{args.version}/reference"
        )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reference",
        help="build drift references from training data",
        description="Build drift references from training data.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    build_parser = commands.add_parser(
        "build",
        help="build a reference (JSON) from a CSV or Parquet file",
        description=(
            "Summarise training data into a drift reference: per feature its kind, bins fixed "
            "from the data's quantiles, counts, a bounded sample, the missing ratio and, for "
            "categorical features, the top categories. Writes versioned JSON."
        ),
        epilog=(
            "example: modeltrace reference build train.csv --model churn --version 3 "
            "--prediction score --categorical plan,region -o churn-3.json"
        ),
    )
    build_parser.add_argument("data", metavar="DATA", help="CSV (.csv, .csv.gz) or Parquet file")
    build_parser.add_argument("--model", required=True, help="model name (ml.model.name)")
    build_parser.add_argument("--version", required=True, help="model version (ml.model.version)")
    build_parser.add_argument(
        "--prediction", metavar="COL", help="column of model outputs (prediction drift)"
    )
    build_parser.add_argument("--target", metavar="COL", help="column of true labels")
    build_parser.add_argument(
        "--score",
        metavar="COL",
        help=(
            "column of the model's confidence (the predicted class's probability, 0 to 1); "
            "with --prediction and --target it calibrates estimated performance (CBPE)"
        ),
    )
    build_parser.add_argument(
        "--categorical", metavar="COLS", help="comma-separated columns to treat as categorical"
    )
    build_parser.add_argument(
        "--exclude", metavar="COLS", help="comma-separated columns to leave out (ids, timestamps)"
    )
    build_parser.add_argument("--bins", type=int, default=10, help="numeric bins (default: 10)")
    build_parser.add_argument(
        "--top-k", type=int, default=20, help="categories kept per feature (default: 20)"
    )
    build_parser.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to write the reference JSON"
    )
    build_parser.add_argument(
        "--store", metavar="PATH", help="also install the reference in this aggregator store"
    )
    build_parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help=(
            f"progress bar on stderr (auto: files over {PROGRESS_MIN_BYTES >> 20} MiB, "
            "on a terminal)"
        ),
    )
    build_parser.set_defaults(func=build)
