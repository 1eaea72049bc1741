"""Reference.from_data: inputs, kinds, bins, summaries; the versioned JSON format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modeltrace.drift.reference import Reference, ReferenceFormatError
from modeltrace.semconv import PREDICTION_FEATURE


def frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, n),
            "age": rng.integers(18, 90, n),
            "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "children": rng.integers(0, 4, n),
        }
    )


def test_numeric_bin_edges_are_reference_quantiles() -> None:
    df = frame()
    ref = Reference.from_data(df, bins=10)
    income = ref["income"]
    assert income.kind == "numeric"
    expected = np.quantile(df["income"].to_numpy(), np.linspace(0, 1, 11))
    np.testing.assert_allclose(income.edges, expected, rtol=1e-12)
    counts = income.counts
    assert counts[0] == counts[-1] == 0  # nothing below min / above max
    assert counts.sum() == len(df)
    np.testing.assert_allclose(counts[1:-1], len(df) / 10, atol=1)  # deciles
    assert income.min == df["income"].min() and income.max == df["income"].max()
    assert income.mean == pytest.approx(df["income"].mean())
    assert income.std == pytest.approx(df["income"].std(ddof=0))
    assert income.reservoir.size == 1000
    assert set(income.reservoir) <= set(df["income"])


def test_kind_inference_and_override() -> None:
    df = frame()
    ref = Reference.from_data(df)
    assert ref["age"].kind == "numeric"  # many distinct integers
    assert ref["region"].kind == "categorical"
    assert ref["children"].kind == "categorical"  # 4 distinct integers
    forced = Reference.from_data(df, categorical={"children": False, "age": True})
    assert forced["children"].kind == "numeric" and forced["age"].kind == "categorical"
    with pytest.raises(ValueError, match="not in the data"):
        Reference.from_data(df, categorical=["nope"])


def test_categorical_top_k_plus_other_and_known_categories() -> None:
    df = frame()
    ref = Reference.from_data(df, top_k=2)
    region = ref["region"]
    assert region.categories == ("north", "south")  # the two most frequent
    counts = df["region"].value_counts()
    np.testing.assert_array_equal(
        region.counts, [counts["north"], counts["south"], counts["east"] + counts["west"]]
    )
    assert region.binning.known == frozenset({"north", "south", "east", "west"})


def test_repeated_values_and_constant_columns() -> None:
    x = np.concatenate([np.zeros(900), np.linspace(1, 2, 100)])
    ref = Reference.from_data({"spiky": x, "constant": np.full(1000, 3.5)})
    edges = ref["spiky"].edges
    assert edges is not None
    assert np.all(np.diff(edges) > 0)  # duplicates removed
    np.testing.assert_array_equal(edges, np.unique(np.quantile(x, np.linspace(0, 1, 11))))
    assert ref["spiky"].counts.sum() == 1000
    constant = ref["constant"]
    assert constant.kind == "numeric"
    np.testing.assert_array_equal(constant.edges, [3.5])
    np.testing.assert_array_equal(constant.counts, [0, 1000, 0])
    sketch = constant.new_sketch()
    sketch.update(np.array([3.5, 3.4, 9.0]), np.ones(3))
    np.testing.assert_array_equal(sketch.counts, [1, 1, 1])
    assert sketch.out_of_range == 2


def test_missing_values_and_infinities() -> None:
    x = np.array([1.0, np.nan, 2.0, np.inf, 3.0, np.nan, 4.0, 5.5, 6.5, 7.5])
    cats = np.array(["a", None, "b", "", "a", "b", "a", "c", "a", "b"], dtype=object)
    ref = Reference.from_data({"x": x, "c": cats})
    assert ref["x"].missing == 2 and ref["x"].missing_ratio == pytest.approx(0.2)
    assert ref["x"].max == 7.5  # the summary uses finite values
    assert ref["x"].counts[-1] == 1  # +inf sits above the maximum
    assert ref["c"].missing == 2
    assert ref["c"].categories == ("a", "b", "c")


def test_inputs_numpy_list_of_dicts_dict_of_columns_agree() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=300)
    b = rng.choice(["x", "y"], 300)
    from_dict = Reference.from_data({"a": a, "b": b})
    from_rows = Reference.from_data(
        [{"a": float(u), "b": str(v)} for u, v in zip(a, b, strict=True)]
    )
    from_frame = Reference.from_data(pd.DataFrame({"a": a, "b": b}))
    for other in (from_rows, from_frame):
        assert list(other.features) == ["a", "b"]
        np.testing.assert_array_equal(other["a"].counts, from_dict["a"].counts)
        np.testing.assert_array_equal(other["b"].counts, from_dict["b"].counts)
    named = Reference.from_data(np.column_stack([a, a * 2]), feature_names=["u", "v"])
    assert list(named.features) == ["u", "v"]
    assert list(Reference.from_data(np.column_stack([a, a])).features) == ["f0", "f1"]
    rows = [{"a": 1.0}, {"a": 2.0, "extra": "z"}]  # ragged keys: absent = missing
    assert Reference.from_data(rows)["extra"].missing == 1


def test_predictions_and_targets() -> None:
    df = frame()
    scores = np.random.default_rng(2).random(len(df))
    df["label"] = (scores > 0.5).astype(int)
    ref = Reference.from_data(df, predictions=scores, targets="label")
    assert PREDICTION_FEATURE in ref.features
    assert ref.prediction is not None and ref.prediction.kind == "numeric"
    assert "label" not in ref.features and ref.target is not None
    assert ref.target.counts.sum() == len(df)
    assert ref.feature_names == ["income", "age", "region", "children"]
    with pytest.raises(ValueError, match="values for"):
        Reference.from_data(df, predictions=scores[:10])


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="2-D"):
        Reference.from_data(np.ones(5))
    with pytest.raises(TypeError, match="reference data must be"):
        Reference.from_data(42)
    with pytest.raises(ValueError, match="feature_names has 1 names for 2"):
        Reference.from_data(np.ones((3, 2)), feature_names=["a"])
    with pytest.raises(ValueError, match="differ in length"):
        Reference.from_data({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ValueError, match="bins"):
        Reference.from_data({"a": [1.0, 2.0]}, bins=0)


def test_save_load_round_trip(tmp_path: Path) -> None:
    df = frame()
    ref = Reference.from_data(df, predictions=np.arange(len(df)) % 3, targets=df["age"] > 50)
    path = tmp_path / "ref.json"
    ref.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "modeltrace.reference" and data["format_version"] == 1
    loaded = Reference.load(path)
    assert loaded.to_dict() == ref.to_dict()
    for name, feature in ref.features.items():
        np.testing.assert_array_equal(loaded[name].counts, feature.counts)
        np.testing.assert_array_equal(loaded[name].reservoir, feature.reservoir)
        assert loaded[name].binning.same_as(feature.binning)
    assert loaded.prediction is not None and loaded.prediction.kind == "categorical"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"format": "evidently"}', "not a modeltrace reference"),
        ('{"format": "modeltrace.reference", "format_version": 2}', "format_version 2"),
        ('{"format": "modeltrace.reference", "format_version": 1, "features": []}', "non-empty"),
    ],
)
def test_bad_formats_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReferenceFormatError, match=message) as info:
        Reference.load(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)


def test_broken_feature_entries_name_the_feature() -> None:
    good = Reference.from_data({"a": np.arange(100.0), "b": ["x", "y"] * 50}).to_dict()
    broken = json.loads(json.dumps(good))
    broken["features"][0]["counts"] = [1.0, 2.0]
    with pytest.raises(ReferenceFormatError, match=r"feature 'a': 2 counts for 12 bins"):
        Reference.from_dict(broken)
    broken = json.loads(json.dumps(good))
    del broken["features"][1]["categories"]
    with pytest.raises(ReferenceFormatError, match=r"feature 'b': missing field 'categories'"):
        Reference.from_dict(broken)
    broken = json.loads(json.dumps(good))
    broken["features"][0]["edges"] = [3.0, 1.0] + [0.0] * 9
    with pytest.raises(ReferenceFormatError, match="strictly increasing"):
        Reference.from_dict(broken)


def test_size_does_not_depend_on_training_set_size() -> None:
    small = len(Reference.from_data(frame(2_000, seed=3)).to_json())
    large = len(Reference.from_data(frame(200_000, seed=4)).to_json())
    assert large < small * 1.2
    assert large < 60_000


def test_high_cardinality_categoricals_stay_bounded() -> None:
    ids = np.array([f"user-{i}" for i in range(20_000)], dtype=object)
    ref = Reference.from_data({"user": ids}, top_k=20)
    user = ref["user"]
    assert len(user.categories) == 20
    assert user.binning.known is None  # too many to remember: unseen is not tracked
    assert len(ref.to_json()) < 5_000
    sketch = user.new_sketch()
    sketch.update(np.array(["user-1", "brand-new"], dtype=object), np.ones(2))
    assert sketch.unseen == 0


@pytest.mark.parametrize("dtype", ["string[pyarrow]", "string[python]", "object"])
def test_string_dataframe_columns_give_the_reference_of_plain_lists(dtype: str) -> None:
    # pandas string columns are read through their distinct values (one shared str
    # per value): the reference must be byte-for-byte the one built from plain lists.
    rng = np.random.default_rng(11)
    pool = np.array(["a", "b", "é", "zz", "", None, "a\x00", "long " * 20], dtype=object)
    n = 3000
    cats = pool[rng.integers(0, pool.size, n)]
    other = np.array([f"v{i}" for i in rng.integers(0, 40, n)], dtype=object)
    other[::13] = None
    numbers = rng.normal(size=n)
    numbers[::17] = np.nan
    frame = pd.DataFrame(
        {
            "c": pd.Series(list(cats), dtype=dtype),
            "d": pd.Series(list(other), dtype=dtype),
            "x": numbers,
        }
    )
    plain = {"c": list(cats), "d": list(other), "x": numbers.tolist()}
    built = Reference.from_data(frame, categorical=["c", "d"]).to_dict()
    expected = Reference.from_data(plain, categorical=["c", "d"]).to_dict()
    built.pop("created_at")
    expected.pop("created_at")
    assert json.dumps(built, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize("n", [0, 1, 5, 999, 1000, 1001, 1003, 2500, 50_000])
@pytest.mark.parametrize("size", [0, 1, 7, 1000])
def test_quantile_sample_by_index_is_numpys_inverted_cdf(n: int, size: int) -> None:
    from modeltrace.drift.reference import _sorted_quantile_sample

    rng = np.random.default_rng(n + size)
    values = np.sort(np.round(rng.normal(size=n), 2))  # ties included
    got = _sorted_quantile_sample(values, size)
    if n <= size:
        expected = values
    elif size == 0:
        expected = np.empty(0)
    else:
        levels = (np.arange(size) + 0.5) / size
        expected = np.quantile(values, levels, method="inverted_cdf")
    np.testing.assert_array_equal(got, expected)
