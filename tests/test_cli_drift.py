"""``modeltrace reference build`` and ``modeltrace report`` on real files in tmp_path."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drift_spans import SpanFactory, prediction_attributes, random_rows, to_request
from modeltrace.cli import main
from modeltrace.cli.reference import build, read_table
from modeltrace.drift import DriftAggregator, Reference


@pytest.fixture
def training(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(random_rows(rng, 3000))
    frame["income"] = frame["income"].round(2)  # CSV round trip is exact
    frame["age"] = frame["age"].round(3)
    frame.loc[::50, "age"] = np.nan
    frame["score"] = (frame["plan"] == "pro").astype(int)
    frame["label"] = rng.integers(0, 2, len(frame))
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.to_parquet(tmp_path / "train.parquet")
    return frame


@pytest.fixture
def factory() -> Iterator[SpanFactory]:
    f = SpanFactory()
    yield f
    f.close()


def _counts(reference: Reference) -> dict[str, list[float]]:
    return {name: f.to_dict()["counts"] for name, f in reference.features.items()}


def test_build_from_csv_and_parquet_match_the_api(
    tmp_path: Path, training: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--model", "churn", "--version", "3", "--prediction", "score", "--target", "label"]
    for source, out in (("train.csv", "a.json"), ("train.parquet", "b.json")):
        output = ["--categorical", "plan", "-o", str(tmp_path / out)]
        code = main(["reference", "build", str(tmp_path / source), *common, *output])
        assert code == 0
    assert "4 features" in capsys.readouterr().out
    from_csv = Reference.load(tmp_path / "a.json")
    from_parquet = Reference.load(tmp_path / "b.json")
    direct = Reference.from_data(
        training.drop(columns=["score", "label"]),
        predictions=training["score"].to_numpy(),
        targets=training["label"].to_numpy(),
        categorical=["plan"],
    )
    assert list(from_csv.features) == ["age", "income", "plan", "__prediction__"]
    assert from_csv.features["plan"].kind == "categorical"
    assert from_csv.features["age"].missing_ratio == pytest.approx(60 / 3000)
    assert _counts(from_csv) == _counts(direct) == _counts(from_parquet)
    assert from_csv.target is not None


def test_build_with_score_keeps_the_calibration_sample_of_the_api(
    tmp_path: Path, training: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    frame = training.assign(confidence=rng.uniform(0.5, 1.0, len(training)).round(4))
    frame.to_csv(tmp_path / "scored.csv", index=False)
    args = ["reference", "build", str(tmp_path / "scored.csv"), "--model", "m", "--version", "1"]
    labelled = ["--prediction", "score", "--target", "label", "--categorical", "plan"]
    out = ["-o", str(tmp_path / "scored.json")]
    assert main([*args, *labelled, "--score", "confidence", *out]) == 0
    built = Reference.load(tmp_path / "scored.json")
    direct = Reference.from_data(
        frame.drop(columns=["score", "label", "confidence"]),
        predictions=frame["score"].to_numpy(),
        targets=frame["label"].to_numpy(),
        categorical=["plan"],
        scores=frame["confidence"].to_numpy(),
    )
    assert "confidence" not in built.features
    assert built.labelled is not None and direct.labelled is not None
    assert built.labelled.to_dict() == direct.labelled.to_dict()
    assert _counts(built) == _counts(direct)

    # without --target there is nothing to calibrate against; a non-probability is refused
    assert main([*args, "--prediction", "score", "--score", "confidence", *out]) == 2
    assert "scores need predictions and targets" in capsys.readouterr().err
    assert main([*args, *labelled, "--score", "income", *out]) == 2
    assert "--score: column 'income' must hold probabilities in [0, 1]" in capsys.readouterr().err
    assert main([*args, *labelled, "--score", "nope", *out]) == 2
    assert "--score: column(s) 'nope' not in scored.csv" in capsys.readouterr().err


def test_stdlib_csv_reader_gives_the_same_reference(tmp_path: Path, training: pd.DataFrame) -> None:
    columns = read_table(tmp_path / "train.csv", "never", use_pandas=False)
    assert isinstance(columns, dict)
    assert columns["plan"][:3] == training["plan"].tolist()[:3]
    np.testing.assert_array_equal(np.asarray(columns["age"], dtype=float), training["age"])

    args = argparse.Namespace(
        data=str(tmp_path / "train.csv"),
        model="m",
        version="1",
        prediction=None,
        target=None,
        categorical=None,
        exclude="score,label",
        bins=10,
        top_k=20,
        output=str(tmp_path / "std.json"),
        store=None,
        progress="never",
    )
    assert build(args, read=lambda p, mode: read_table(p, mode, use_pandas=False)) == 0
    stdlib_ref = Reference.load(tmp_path / "std.json")
    pandas_ref = Reference.from_data(training.drop(columns=["score", "label"]))
    assert _counts(stdlib_ref) == _counts(pandas_ref)


def test_build_errors_are_clear(
    tmp_path: Path, training: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["reference", "build", "--model", "m", "--version", "1", "-o", str(tmp_path / "r.json")]
    assert main([*base, str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "train.csv"), "--prediction", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--prediction: column(s) 'nope' not in train.csv" in err
    assert "columns: age, income, plan, score, label" in err
    (tmp_path / "data.xlsx").write_bytes(b"x")
    assert main([*base, str(tmp_path / "data.xlsx")]) == 2
    assert "unknown file type" in capsys.readouterr().err
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    assert main([*base, str(tmp_path / "bad.parquet")]) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_progress_bar_on_stderr(
    tmp_path: Path, training: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["reference", "build", str(tmp_path / "train.csv"), "--model", "m", "--version", "1"]
    assert main([*args, "-o", str(tmp_path / "r.json"), "--progress", "always"]) == 0
    err = capsys.readouterr().err
    assert "reading train.csv [" in err and "100.0%" in err


def _store_with_drift(tmp_path: Path, training: pd.DataFrame, factory: SpanFactory) -> Path:
    store = tmp_path / "drift.db"
    identity = ["--model", "churn", "--version", "3", "--prediction", "score"]
    outputs = ["--exclude", "label", "-o", str(tmp_path / "ref.json"), "--store", str(store)]
    assert main(["reference", "build", str(tmp_path / "train.csv"), *identity, *outputs]) == 0
    rng = np.random.default_rng(12)
    spans = []
    for _ in range(150):
        rows = random_rows(rng, 8, shift=0.0)
        rows["age"] = [a + 20.0 for a in rows["age"]]  # 2 sigma shift
        attrs = prediction_attributes(
            "churn", "3", rows, prediction=[int(p == "pro") for p in rows["plan"]]
        )
        spans.append(factory.span("predict churn", attrs))
    agg = DriftAggregator(store)
    agg.ingest_durable([to_request(spans).SerializeToString()])
    agg.close()
    return store


def test_report_table_and_json(
    tmp_path: Path,
    training: pd.DataFrame,
    factory: SpanFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = _store_with_drift(tmp_path, training, factory)
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--model", "churn", "--version", "3"]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[4]
    for column in ("feature", "method", "score", "threshold", "drifted", "n", "missing"):
        assert column in header
    assert "exemplar trace id" in header
    age_line = next(line for line in table.splitlines() if line.startswith("age "))
    assert " YES " in age_line and " 1200 " in age_line
    assert any(len(cell) == 32 for cell in age_line.split())  # an exemplar trace id
    income_line = next(line for line in table.splitlines() if line.startswith("income "))
    assert " no " in income_line

    args = ["report", "--store", str(store), "--model", "churn", "--format", "json"]
    assert main([*args, "--version", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    # Per-feature entries; the dataset-level __multivariate__ entries come on top.
    drifted = {f["name"]: f["drifted"] for f in data["features"] if f["kind"] != "multivariate"}
    assert drifted == {"age": True, "income": False, "plan": False, "__prediction__": False}
    with DriftAggregator(store) as agg:
        expected = agg.evaluate("churn", "3")
    assert [f["score"] for f in data["features"]] == pytest.approx(
        [f.score for f in expected.features]
    )
    assert main(args) == 0  # no --version: a list of every version's report
    listed = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in listed] == ["3"]


def test_report_is_read_only_next_to_a_running_aggregator(
    tmp_path: Path, training: pd.DataFrame, factory: SpanFactory
) -> None:
    store = _store_with_drift(tmp_path, training, factory)
    running = DriftAggregator(store, checkpoint_payloads=10_000, checkpoint_seconds=3600)
    spans = [
        factory.span(
            "predict churn",
            prediction_attributes("churn", "3", random_rows(np.random.default_rng(1), 8)),
        )
    ]
    running.ingest_durable([to_request(spans).SerializeToString()])
    history = len(running.history("churn", "3"))
    query = ["--model", "churn", "--format", "json"]
    proc = subprocess.run(
        [sys.executable, "-m", "modeltrace.cli", "report", "--store", str(store), *query],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)
    assert report["n_samples"] == 150 * 8 + 8  # the uncheckpointed request was replayed
    assert running.store.inbox_size() == 1  # ... but not consumed
    assert len(running.history("churn", "3")) == history  # and nothing was written
    running.close()


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--store", str(tmp_path / "none.db"), "--model", "m"]) == 2
    assert "no store at" in capsys.readouterr().err
    DriftAggregator(tmp_path / "empty.db").close()
    assert main(["report", "--store", str(tmp_path / "empty.db"), "--model", "m"]) == 1
    assert "unknown model 'm'" in capsys.readouterr().err
    args = ["report", "--store", str(tmp_path / "empty.db"), "--model", "m", "--version", "1"]
    assert main(args) == 1


def test_help_of_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["reference", "build", "--help"], ["report", "--help"], ["reference", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--prediction COL" in out and "--format {table,json,html}" in out
    assert main(["reference"]) == 2
