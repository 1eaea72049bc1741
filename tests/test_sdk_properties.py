"""Property tests: arbitrary inputs/outputs never make instrumentation raise or change results."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import modeltrace
from modeltrace import semconv
from sdk_harness import Telemetry


class Hostile:
    """An object whose __len__, __iter__, __repr__ and __str__ all raise."""

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("iter")

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    __str__ = __repr__


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=600),
    st.binary(max_size=64),
    st.builds(Hostile),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=12), inner, max_size=6),
    ),
    max_leaves=25,
)
arrays = hnp.arrays(
    dtype=st.sampled_from(
        [np.float64, np.int64, np.uint64, np.bool_, np.object_, "U5", np.complex128]
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
)


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    # Function scope: modeltrace's runtime is process-global, and under
    # ``pytest -n`` tests of other modules run between this module's tests.
    telemetry = Telemetry(sample_rate=1.0)
    yield telemetry
    telemetry.close()


def _identity(x, result):  # type: ignore[no-untyped-def]
    return result


monitored = modeltrace.monitor(model="prop", version="1")(_identity)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(x=st.one_of(values, arrays), result=st.one_of(values, arrays))
def test_never_raises_never_changes_the_result(tel: Telemetry, x, result) -> None:  # type: ignore[no-untyped-def]
    tel.exporter.clear()
    out = monitored(x, result)
    assert out is result
    (span,) = tel.spans()
    assert span.attributes[semconv.MODEL_NAME] == "prop"
    rate = span.attributes.get(semconv.SAMPLE_RATE, 1.0)
    assert 0.0 <= rate <= 1.0 and not math.isnan(rate)
    for key, value in span.attributes.items():
        if isinstance(value, str):
            assert len(value) <= 256 or key == semconv.PREDICTION_ID
        if isinstance(value, tuple) and value:
            assert len({type(v) for v in value}) == 1, (key, value)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(exc_message=st.one_of(st.text(max_size=50), st.builds(Hostile)))
def test_exceptions_pass_through_unchanged(exc_message) -> None:  # type: ignore[no-untyped-def]
    error = ValueError(exc_message)

    @modeltrace.monitor(model="prop")
    def boom(x):  # type: ignore[no-untyped-def]
        raise error

    try:
        boom(exc_message)
    except ValueError as caught:
        assert caught is error
    else:
        raise AssertionError("the exception was swallowed")
