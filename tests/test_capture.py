"""Capture: every input adapter, output adapter, caps, privacy and sampling, checked by value."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pydantic
import pytest
from scipy import stats

import modeltrace
from modeltrace import semconv
from modeltrace.capture import choose_rows
from modeltrace.sampling import ConstantRate, RowBudget
from modeltrace.settings import Settings, load_settings
from sdk_harness import Telemetry

F = semconv.FEATURE_PREFIX


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    t = Telemetry(sample_rate=1.0)
    yield t
    t.close()


def _attrs(tel: Telemetry, func, x, **kw):
    result = modeltrace.monitor(model="m", version="1", **kw)(func)(x)
    spans = tel.spans()
    assert len(spans) == 1
    tel.exporter.clear()
    return result, dict(spans[0].attributes)


class Applicant(pydantic.BaseModel):
    age: int
    city: str
    income: float | None = None


def test_dict_is_one_row(tel: Telemetry) -> None:
    _, a = _attrs(tel, lambda x: 0.25, {"age": 41, "city": "Oslo", "income": None, "ok": True})
    assert a[F + "age"] == 41
    assert a[F + "city"] == "Oslo"
    assert math.isnan(a[F + "income"])
    assert a[F + "ok"] is True
    assert a[semconv.BATCH_SIZE] == 1
    assert a[semconv.SAMPLE_INDICES] == (0,)
    assert a[semconv.SAMPLE_RATE] == 1.0
    assert a[semconv.PREDICTION_VALUE] == 0.25


def test_numpy_1d_row_and_2d_batch(tel: Telemetry) -> None:
    _, a = _attrs(tel, lambda x: 1, np.array([1.5, np.nan, 3.0]))
    assert a[semconv.BATCH_SIZE] == 1
    assert a[F + "f0"] == 1.5 and math.isnan(a[F + "f1"]) and a[F + "f2"] == 3.0
    x = np.arange(12, dtype=float).reshape(4, 3)
    _, a = _attrs(tel, lambda x: x.sum(axis=1), x, feature_names=["a", "b", "c"])
    assert a[semconv.BATCH_SIZE] == 4
    assert a[semconv.SAMPLE_INDICES] == (0, 1, 2, 3)
    assert a[F + "a"] == (0.0, 3.0, 6.0, 9.0)
    assert a[F + "c"] == (2.0, 5.0, 8.0, 11.0)
    assert a[semconv.PREDICTION_VALUE] == tuple(x.sum(axis=1).tolist())


def test_dataframe_and_series(tel: Telemetry) -> None:
    df = pd.DataFrame({"age": [30, 40, None], "city": ["a", None, "c"]})
    _, a = _attrs(tel, lambda x: np.array(["y", "n", "y"]), df)
    assert a[semconv.BATCH_SIZE] == 3
    assert a[F + "age"][:2] == (30.0, 40.0) and math.isnan(a[F + "age"][2])
    assert a[F + "city"] == ("a", "", "c")
    assert a[semconv.PREDICTION_VALUE] == ("y", "n", "y")
    _, a = _attrs(tel, lambda x: 2.0, df.iloc[0])
    assert a[semconv.BATCH_SIZE] == 1
    assert a[F + "age"] == 30.0 and a[F + "city"] == "a"


def test_list_of_dicts_list_of_lists_pydantic_scalar(tel: Telemetry) -> None:
    rows = [{"a": 1, "b": "x"}, {"a": 2}, {"a": None, "b": "z"}]
    _, a = _attrs(tel, lambda x: [0, 1, 0], rows)
    assert a[F + "a"][:2] == (1.0, 2.0)
    assert math.isnan(a[F + "a"][2])
    assert a[F + "b"] == ("x", "", "z")
    assert a[semconv.PREDICTION_VALUE] == (0, 1, 0)
    _, a = _attrs(tel, lambda x: [1.0, 2.0], [[1, 2], [3, 4]], feature_names=["p", "q"])
    assert a[F + "p"] == (1, 3) and a[F + "q"] == (2, 4)
    _, a = _attrs(tel, lambda x: "ok", Applicant(age=5, city="Rome"))
    assert a[F + "age"] == 5 and a[F + "city"] == "Rome" and math.isnan(a[F + "income"])
    _, a = _attrs(tel, lambda x: [1, 2], [Applicant(age=1, city="a"), Applicant(age=2, city="b")])
    assert a[F + "age"] == (1, 2) and a[F + "city"] == ("a", "b")
    _, a = _attrs(tel, lambda x: x * 2, 21)
    assert a[F + "f0"] == 21 and a[semconv.PREDICTION_VALUE] == 42


def test_feature_names_from_model_and_unknown_input(tel: Telemetry) -> None:
    class Model:
        feature_names_in_ = np.array(["height", "width"])

        @modeltrace.monitor(model="m", version="1")
        def predict(self, x):
            return np.zeros(len(x))

    Model().predict(np.ones((2, 2)))
    a = dict(tel.span().attributes)
    assert a[F + "height"] == (1.0, 1.0) and a[F + "width"] == (1.0, 1.0)
    assert a[semconv.MODEL_OPERATION] == "predict"
    tel.exporter.clear()
    _, a = _attrs(tel, lambda x: None, object())
    assert not any(k.startswith(F) for k in a)
    assert a[semconv.BATCH_SIZE] == 1


def test_probabilities_give_class_and_score(tel: Telemetry) -> None:
    class Clf:
        classes_ = np.array(["no", "yes"])

    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
    model = modeltrace.wrap(Clf(), model="m", version="1")
    Clf.predict_proba = lambda self, x: proba  # type: ignore[attr-defined]
    model.predict_proba(np.zeros((3, 2)))
    a = dict(tel.span().attributes)
    assert a[semconv.PREDICTION_VALUE] == ("no", "yes", "yes")
    assert a[semconv.PREDICTION_SCORE] == pytest.approx(proba.max(axis=1).tolist())
    assert a[semconv.MODEL_TASK] == "classification"
    tel.exporter.clear()
    _, a = _attrs(tel, lambda x: {"label": "fraud", "score": 0.93}, {"amount": 3})
    assert a[semconv.PREDICTION_VALUE] == "fraud" and a[semconv.PREDICTION_SCORE] == 0.93
    _, a = _attrs(tel, lambda x: {"labels": ["a", "b"], "scores": [0.6, 0.8]}, [[1], [2]])
    assert a[semconv.PREDICTION_VALUE] == ("a", "b")
    assert a[semconv.PREDICTION_SCORE] == (0.6, 0.8)


def test_max_rows_sampling_is_uniform_and_cost_bounded(tel: Telemetry) -> None:
    x = np.arange(1000 * 50, dtype=float).reshape(1000, 50)
    _, a = _attrs(tel, lambda x: x[:, 0], x, max_rows=8)
    idx = list(a[semconv.SAMPLE_INDICES])
    assert len(idx) == 8 and idx == sorted(set(idx))
    assert a[F + "f7"] == tuple(x[idx, 7].tolist())
    assert a[semconv.PREDICTION_VALUE] == tuple(x[idx, 0].tolist())
    # probability that each row was captured: 8 of 1000
    assert a[semconv.SAMPLE_RATE] == pytest.approx(8 / 1000)
    # choose_rows is uniform: chi-square goodness of fit over 20 000 draws of 3 of 10
    counts = np.zeros(10)
    random.seed(7)
    for _ in range(20000):
        counts[choose_rows(10, 3)] += 1
    assert stats.chisquare(counts).pvalue > 0.001


def test_feature_cap_and_attribute_limit(tel: Telemetry, monkeypatch) -> None:
    x = {f"c{i}": i for i in range(150)}
    _, a = _attrs(tel, lambda x: 1, x)
    assert sum(k.startswith(F) for k in a) == 100
    assert a[semconv.FEATURES_TRUNCATED] == 50
    assert len(a) < 128
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "40")
    assert Settings().effective_max_features() == 40 - 16


def test_long_strings_cut_and_bytes(tel: Telemetry) -> None:
    _, a = _attrs(tel, lambda x: "y" * 1000, {"text": "x" * 1000, "raw": b"\x01\x02"})
    assert a[F + "text"] == "x" * 256
    assert a[semconv.PREDICTION_VALUE] == "y" * 256
    assert a[F + "raw"] == "0102"


def test_privacy_default_redact_hash_and_off() -> None:
    salt = "pepper"
    t = Telemetry(sample_rate=1.0, hash=["user_*"], hash_salt=salt, redact=["secret_sauce"])
    try:
        row = {
            "email": "a@b.c",
            "Phone_Number": "123",
            "user_id": "u-17",
            "secret_sauce": 1,
            "x": 2,
        }
        modeltrace.monitor(model="m", version="1")(lambda r: 0)(row)
        a = dict(t.span().attributes)
        expected = hashlib.sha256((salt + "u-17").encode()).hexdigest()[:16]
        assert a[F + "user_id"] == expected
        assert F + "email" not in a and F + "Phone_Number" not in a and F + "secret_sauce" not in a
        assert a[F + "x"] == 2
    finally:
        t.close()
    t = Telemetry(capture_features=False, capture_predictions=False)
    try:
        modeltrace.monitor(model="m", version="1")(lambda r: 3)({"x": 1})
        a = dict(t.span().attributes)
        assert not any(k.startswith(F) for k in a) and semconv.PREDICTION_VALUE not in a
        assert a[semconv.BATCH_SIZE] == 1
    finally:
        t.close()


def test_settings_precedence(monkeypatch) -> None:
    monkeypatch.setenv("MODELTRACE_MAX_ROWS", "3")
    monkeypatch.setenv("MODELTRACE_REDACT", "a, b*")
    monkeypatch.setenv("MODELTRACE_CAPTURE_FEATURES", "false")
    s = load_settings()
    assert (s.max_rows, s.redact, s.capture_features) == (3, ("a", "b*"), False)
    assert load_settings(max_rows=5).max_rows == 5
    monkeypatch.setenv("MODELTRACE_SAMPLE_RATE", "2")
    with pytest.raises(ValueError, match="MODELTRACE_SAMPLE_RATE"):
        load_settings()
    monkeypatch.delenv("MODELTRACE_SAMPLE_RATE")
    monkeypatch.setenv("MODELTRACE_DISABLED", "maybe")
    with pytest.raises(ValueError, match="MODELTRACE_DISABLED"):
        load_settings()
    monkeypatch.delenv("MODELTRACE_DISABLED")
    with pytest.raises(TypeError, match="bogus"):
        load_settings(bogus=1)
    with pytest.raises(ValueError, match="max_rows"):
        modeltrace.monitor(model="m", max_rows=-1)


class _Clock:
    """A controllable monotonic clock for the budget (real arithmetic, explicit time)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_row_budget_holds_and_rate_is_honest() -> None:
    clock = _Clock()
    budget = RowBudget(50, clock=clock)
    random.seed(3)
    # below budget: everything captured at p = 1
    assert all(budget.decide(1) == (True, 1.0) for _ in range(50))
    # 500 rows/s for 20 s: about 50 captured per second, and p = 50/500 after the first window
    captured_per_second = []
    rates = []
    for second in range(1, 21):
        clock.now = float(second)
        got = 0
        for i in range(500):
            clock.now = second + i / 500
            ok, p = budget.decide(1)
            got += ok
            rates.append(p)
        captured_per_second.append(got)
    steady = captured_per_second[2:]
    assert 40 <= np.mean(steady) <= 60
    assert rates[-1] == pytest.approx(50 / 500)
    # Horvitz-Thompson: sum of 1/p over captured rows estimates the 10 000 rows offered
    clock.now = 100.0
    budget2 = RowBudget(50, clock=clock)
    total = 0.0
    for second in range(100, 120):
        for i in range(500):
            clock.now = second + i / 500
            ok, p = budget2.decide(1)
            total += (1 / p) if ok else 0.0
    assert total == pytest.approx(10000, rel=0.1)
    assert ConstantRate(0.0).decide(4) == (False, 0.0)


def _row_attributes(row: object, keys: object, max_features: int = 100) -> dict[str, object]:
    from modeltrace.capture import CaptureLimits, adapt_input

    view = adapt_input(row, None, None)
    assert view is not None
    attributes: dict[str, object] = {}
    view.add_features([0], CaptureLimits(max_features=max_features), keys, attributes)  # type: ignore[arg-type]
    return attributes


def test_dict_row_fast_path_matches_the_per_name_loop() -> None:
    """A plain dict (copied in one update when every value is a number) gives exactly what
    the per-name loop gives for the same mapping seen through a read-only proxy."""
    from types import MappingProxyType

    from modeltrace.capture import FeatureKeys
    from modeltrace.privacy import PrivacyPolicy

    rng = random.Random(7)
    pool = [
        0.5,
        -2.0,
        float("nan"),
        float("inf"),
        1e300,
        True,
        False,
        0,
        7,
        -(2**63) + 1,
        2**63 - 1,
        2**63,
        -(2**70),
        None,
        "x",
        np.float64(1.5),
        np.int64(3),
    ]
    names = ["a", "b", "email", "card", "c", "d", "e"]
    fast_keys = FeatureKeys(PrivacyPolicy(hash=("card",)))
    loop_keys = FeatureKeys(PrivacyPolicy(hash=("card",)))
    for trial in range(600):
        chosen = rng.sample(names, rng.randint(0, len(names)))
        if trial % 3:  # mostly numbers, the fast path's case
            chosen = [n for n in chosen if n not in ("email", "card")]
        row = {n: rng.choice(pool[:13] if trial % 2 else pool) for n in chosen}
        max_features = rng.choice([100, 100, 2])
        fast = _row_attributes(row, fast_keys, max_features)
        loop = _row_attributes(MappingProxyType(row), loop_keys, max_features)
        assert list(fast) == list(loop)
        for key, value in loop.items():
            assert type(fast[key]) is type(value), (row, key)
            assert fast[key] == value or (value != value and fast[key] != fast[key]), (row, key)


def test_numpy_row_fast_path_matches_the_per_column_path() -> None:
    """A 1-row numeric array with all names kept equals the same values given as a dict."""
    from modeltrace.capture import FeatureKeys
    from modeltrace.privacy import PrivacyPolicy

    keys = FeatureKeys(PrivacyPolicy())
    for dtype in (np.float64, np.float32, np.int64, np.int32, np.uint16, np.bool_):
        values = np.array([0, 1, 3, 250], dtype=dtype)
        got = _row_attributes(values, keys)
        expected = {f"{semconv.FEATURE_PREFIX}f{i}": v for i, v in enumerate(values.tolist())}
        assert got == expected
        assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


def test_numpy_1d_row_equals_the_same_row_as_a_2d_batch() -> None:
    """A 1-D array (kept flat on the fast path) captures exactly what its (1, n) form does."""
    from modeltrace.capture import CaptureLimits, FeatureKeys, adapt_input
    from modeltrace.privacy import PrivacyPolicy

    rows = [
        np.array([0.5, np.nan, -3.0, 1e300]),
        np.array([1, 2, 3, 2**40], dtype=np.int64),
        np.array([7, 8, 9, 10], dtype=np.uint64),
        np.array([True, False, True, True]),
        np.array(["a", "b" * 300, "", "d"]),
        np.array([1, "x", None, 2.5], dtype=object),
    ]
    for names in (None, ["age", "email", "card", "z"]):
        for max_features in (100, 3):
            policy = dict(hash=("card",))
            for row in rows:
                got: dict[str, object] = {}
                want: dict[str, object] = {}
                limits = CaptureLimits(max_features=max_features)
                flat = adapt_input(row, names, None)
                batch = adapt_input(row.reshape(1, -1), names, None)
                assert flat is not None and batch is not None
                flat.add_features([0], limits, FeatureKeys(PrivacyPolicy(**policy)), got)
                batch.add_features([0], limits, FeatureKeys(PrivacyPolicy(**policy)), want)
                assert list(got) == list(want)
                assert repr(list(got.values())) == repr(list(want.values()))
