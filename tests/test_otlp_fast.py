"""The columnar OTLP extraction (otlp_fast / otlp_scan) against the generic decoder.

Random requests are built with the real protobuf classes: prediction spans of
several layouts repeated with fresh values (so templates group them), mixed with
label spans, other spans, invalid values, duplicate keys and odd encodings. The
fast path must give exactly the generic decoder's ``Extraction`` (same rows in
the same order, same counters), or decline (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from drift_spans import SpanFactory, any_value, prediction_attributes, random_rows, to_request
from modeltrace import semconv
from modeltrace.drift import otlp_fast, otlp_scan, otlp_slots
from modeltrace.drift.extract import Extraction, InvalidPayloadError, ModelRows, extract_otlp

END_NS = 1_700_000_000_123_456_789


def generic(data: bytes) -> Extraction:
    """The generic decoder's answer (the fast path switched off)."""
    with mock.patch.object(otlp_fast, "extract_request", return_value=None):
        return extract_otlp(data)


def _same_array(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.dtype == b.dtype, what
    assert a.shape == b.shape, what
    if a.dtype == object:
        assert a.tolist() == b.tolist(), what
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


def _same_rows(a: ModelRows, b: ModelRows) -> None:
    assert (a.model, a.version, a.spans) == (b.model, b.version, b.spans)
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        _same_array(a.columns[name], b.columns[name], f"column {name}")
    for attr in ("weights", "trace_ids", "timestamps", "prediction_ids", "row_indices"):
        _same_array(getattr(a, attr), getattr(b, attr), attr)
    assert a.uncaptured_ids == b.uncaptured_ids
    assert list(a.embeddings) == list(b.embeddings)
    for attr in ("ends", "durations", "errors", "trace_ids"):
        _same_array(getattr(a.calls, attr), getattr(b.calls, attr), f"calls.{attr}")


def assert_same(fast: Extraction, slow: Extraction) -> None:
    assert (fast.accepted, fast.rejected, fast.ignored) == (
        slow.accepted,
        slow.rejected,
        slow.ignored,
    )
    assert fast.reasons == slow.reasons
    assert fast.labels == slow.labels
    assert list(fast.batches) == list(slow.batches)
    for key in slow.batches:
        _same_rows(fast.batches[key], slow.batches[key])


# --- random requests ---------------------------------------------------------------

# Value layouts of a feature attribute; values are drawn per span from the layout.
LAYOUTS = [
    "doubles",
    "doubles_nan",
    "small_ints",
    "wide_ints",
    "negative_ints",
    "bools",
    "strings",
    "mixed",
    "scalar_double",
    "scalar_int",
    "scalar_string",
    "empty",
    "ragged",
    "long_doubles",
    "varied_strings",
    "short_strings",
    "text_and_numbers",
    "scalar_varied",
]
WORDS = ["a", "bb", "", "é", "ccc", "日本"]
# Strings of many lengths (slotted templates): missing (None, ""), non-ASCII, and
# lengths around the one-byte varint limit up to the SDK's 256-character cut.
VARIED = ["a", "bb", "", None, "é", "日本語", "x" * 125, "y" * 126, "z" * 256, "ü" * 256]


def _feature_value(layout: str, n: int, rng: np.random.Generator) -> Any:
    if layout == "doubles":
        return rng.normal(size=n).tolist()
    if layout == "doubles_nan":
        values = rng.normal(size=n)
        values[rng.random(n) < 0.3] = math.nan
        return values.tolist()
    if layout == "small_ints":
        return rng.integers(0, 5, n).tolist()
    if layout == "wide_ints":
        return rng.integers(0, 400, n).tolist()
    if layout == "negative_ints":
        return rng.integers(-3, 3, n).tolist()
    if layout == "bools":
        return (rng.random(n) < 0.5).tolist()
    if layout == "strings":
        return [WORDS[i] for i in rng.integers(0, 2, n)]
    if layout == "mixed":
        return [1.5 if i % 2 else "x" for i in range(n)]
    if layout == "scalar_double":
        return float(rng.normal())
    if layout == "scalar_int":
        return int(rng.integers(0, 3))
    if layout == "scalar_string":
        return WORDS[int(rng.integers(0, len(WORDS)))]
    if layout == "empty":
        return None
    if layout == "ragged":
        return rng.normal(size=n + 1).tolist()
    if layout == "varied_strings":
        return [VARIED[i] for i in rng.integers(0, len(VARIED), n)]
    if layout == "short_strings":  # one slotted template covers these spans
        return [
            None if r < 0.2 else "" if r < 0.3 else "c" * int(k)
            for r, k in zip(rng.random(n).tolist(), rng.integers(1, 4, n).tolist(), strict=True)
        ]
    if layout == "text_and_numbers":  # strings of varying length next to numbers
        return ["t" * int(k) if i % 2 == 0 else 2.5 for i, k in enumerate(rng.integers(0, 3, n))]
    if layout == "scalar_varied":
        return VARIED[int(rng.integers(0, len(VARIED)))]
    return rng.normal(size=14).tolist()  # long_doubles: more than 11 elements


@st.composite
def span_shapes(draw: st.DrawFn) -> dict[str, Any]:
    features = draw(
        st.dictionaries(
            st.sampled_from(["age", "income", "plan", "kids"]),
            st.sampled_from(LAYOUTS),
            max_size=3,
        )
    )
    return {
        "kind": draw(st.sampled_from(["predict", "predict", "predict", "label", "other"])),
        "model": draw(st.sampled_from(["churn", "fraud", ""])),
        "version": draw(st.sampled_from(["1", "2", None, 3])),
        "rows": draw(st.integers(1, 4)),
        "features": features,
        "prediction": draw(
            st.sampled_from([None, "doubles", "scalar_int", "strings", "short_strings"])
        ),
        "rate": draw(st.sampled_from([None, "valid", 1, 0.0, 1.5, "nan", "text"])),
        "indices": draw(st.sampled_from(["rows", "rows", None, "short", "scalar", "wide"])),
        "pid": draw(st.sampled_from([None, "ascii", "unicode", "int", "empty"])),
        "error_type": draw(st.sampled_from([None, None, "Timeout", ""])),
        "status": draw(st.sampled_from([None, 0, 1, 2])),
        "start": draw(st.sampled_from(["before", "before", "zero", "after"])),
        "end": draw(st.sampled_from(["set", "set", "set", "zero"])),
        "trace_id": draw(st.sampled_from([16, 16, 0, 4])),
        "extra": draw(st.sampled_from([None, "http", "duplicate_model", "duplicate_feature"])),
    }


def _span_attributes(shape: dict[str, Any], rng: np.random.Generator) -> list[tuple[str, Any]]:
    n = shape["rows"]
    attrs: list[tuple[str, Any]] = [(semconv.MODEL_NAME, shape["model"])]
    if shape["version"] is not None:
        attrs.append((semconv.MODEL_VERSION, shape["version"]))
    if shape["kind"] == "label":
        attrs.append((semconv.PREDICTION_ID, "p-" + str(int(rng.integers(0, 99)))))
        attrs.append((semconv.LABEL_VALUE, rng.integers(0, 2, n).tolist()))
        return attrs
    if shape["kind"] == "other":
        return [("http.method", "GET"), ("http.route", "/v" * int(rng.integers(1, 3)))]
    rate = shape["rate"]
    rates = {"valid": float(rng.uniform(0.1, 1.0)), "nan": math.nan}
    if rate is not None:
        attrs.append((semconv.SAMPLE_RATE, rates.get(rate, rate)))
    indices = shape["indices"]
    if indices == "rows":
        attrs.append((semconv.SAMPLE_INDICES, list(range(n))))
    elif indices == "short":
        attrs.append((semconv.SAMPLE_INDICES, list(range(max(n - 1, 1)))))
    elif indices == "scalar":
        attrs.append((semconv.SAMPLE_INDICES, 0))
    elif indices == "wide":
        attrs.append((semconv.SAMPLE_INDICES, [200 + i for i in range(n)]))
    for name, layout in shape["features"].items():
        attrs.append((semconv.FEATURE_PREFIX + name, _feature_value(layout, n, rng)))
    if shape["prediction"] is not None:
        attrs.append((semconv.PREDICTION_VALUE, _feature_value(shape["prediction"], n, rng)))
    pid = shape["pid"]
    if pid is not None:
        number = int(rng.integers(0, 10**6))
        pids = {"ascii": f"{number:08x}", "unicode": f"é{number % 10}", "int": number, "empty": ""}
        attrs.append((semconv.PREDICTION_ID, pids[pid]))
    if shape["error_type"] is not None:
        attrs.append((semconv.ERROR_TYPE, shape["error_type"]))
    extra = shape["extra"]
    if extra == "http":
        attrs.append(("http.status_code", int(rng.integers(100, 600))))
    elif extra == "duplicate_model":
        attrs.append((semconv.MODEL_NAME, shape["model"]))
    elif extra == "duplicate_feature" and shape["features"]:
        name = next(iter(shape["features"]))
        attrs.append((semconv.FEATURE_PREFIX + name, _feature_value("doubles", n, rng)))
    return attrs


def predict_shape(**changes: Any) -> dict[str, Any]:
    """A valid prediction span's shape for ``build_request``: 20 rows, a double prediction,
    sample rate and indices, no prediction id, ended; ``changes`` replace fields."""
    shape: dict[str, Any] = {
        "kind": "predict",
        "model": "churn",
        "version": "1",
        "rows": 20,
        "features": {},
        "prediction": "doubles",
        "rate": "valid",
        "indices": "rows",
        "pid": None,
        "error_type": None,
        "status": None,
        "start": "before",
        "end": "set",
        "trace_id": 16,
        "extra": None,
    }
    shape.update(changes)
    return shape


def build_request(shapes: list[dict[str, Any]], order: list[int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i, which in enumerate(order):
        if i and i % 7 == 0:  # spans spread over several scopes and resources
            scope = request.resource_spans.add().scope_spans.add()
        shape = shapes[which]
        span = scope.spans.add()
        prefix = {"predict": "predict ", "label": "label ", "other": "GET "}[shape["kind"]]
        span.name = prefix + (shape["model"] or "x")
        span.trace_id = rng.bytes(shape["trace_id"])
        span.span_id = rng.bytes(8)
        end = END_NS + int(rng.integers(0, 10**12)) if shape["end"] == "set" else 0
        span.end_time_unix_nano = end
        starts = {"before": end - int(rng.integers(1, 10**9)), "zero": 0, "after": end + 5}
        span.start_time_unix_nano = max(starts[shape["start"]], 0)
        if shape["status"] is not None:
            span.status.CopyFrom(Status(code=shape["status"], message="boom" * shape["status"]))
        for key, value in _span_attributes(shape, rng):
            span.attributes.add(key=key, value=any_value(value))
    return request.SerializeToString()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(span_shapes(), min_size=1, max_size=4),
    order=st.lists(st.integers(0, 3), min_size=0, max_size=24),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_path_equals_generic_decoder(
    shapes: list[dict[str, Any]], order: list[int], seed: int
) -> None:
    data = build_request(shapes, [i % len(shapes) for i in order], seed)
    slow = generic(data)
    fast = otlp_fast.extract_request(data)
    if fast is not None:
        assert_same(fast, slow)
    assert_same(extract_otlp(data), slow)


TEXT_LAYOUTS = [
    "varied_strings",
    "short_strings",
    "text_and_numbers",
    "scalar_varied",
    "scalar_string",
    "strings",
    "doubles",
    "empty",
]


@st.composite
def text_shapes(draw: st.DrawFn) -> dict[str, Any]:
    """Valid prediction spans with text features (the slotted templates' spans)."""
    features = draw(
        st.dictionaries(
            st.sampled_from(["color", "city", "plan", "age"]),
            st.sampled_from(TEXT_LAYOUTS),
            min_size=1,
            max_size=4,
        )
    )
    return predict_shape(
        model=draw(st.sampled_from(["churn", "fraud"])),
        rows=draw(st.integers(1, 6)),
        features=features,
        prediction=draw(st.sampled_from([None, "doubles", "short_strings"])),
        rate=draw(st.sampled_from([None, "valid"])),
        indices=draw(st.sampled_from(["rows", None])),
        pid=draw(st.sampled_from([None, "ascii", "unicode"])),
        status=draw(st.sampled_from([None, 2])),
        extra=draw(st.sampled_from([None, None, "http"])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(text_shapes(), min_size=1, max_size=3),
    order=st.lists(st.integers(0, 2), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
)
def test_text_features_equal_generic_decoder(
    shapes: list[dict[str, Any]], order: list[int], seed: int
) -> None:
    """Strings of varying length, missing values (None, ""), non-ASCII text, strings
    at and past the one-byte length limit, scalars and arrays, text next to numbers:
    the slotted templates (``otlp_slots``) give the generic decoder's rows."""
    data = build_request(shapes, [i % len(shapes) for i in order], seed)
    slow = generic(data)
    fast = otlp_fast.extract_request(data)
    assert fast is not None  # valid spans: the fast path never declines here
    assert_same(fast, slow)


def _text_request(spans: int, seed: int) -> bytes:
    features = {"age": "doubles", "color": "short_strings", "city": "varied_strings"}
    return build_request([predict_shape(features=features)], [0] * spans, seed=seed)


def test_slotted_templates_take_spans_with_text_features() -> None:
    data = _text_request(60, seed=4)
    ranges = otlp_scan.span_ranges(data)
    assert ranges is not None and len(ranges) == 60
    groups = otlp_slots.group(data, ranges, lambda _: False, lambda _: None)
    taken = sorted(p for g in groups for p in g.positions.tolist())
    assert taken == list(range(60))  # every span, in at most MAX_BUILDS groups
    assert len({len(r) for r in map(bytes, (data[s:e] for s, e in ranges))}) > 1
    fast = otlp_fast.extract_request(data)
    assert fast is not None
    assert_same(fast, generic(data))
    city = fast.batches[("churn", "1")].columns["city"]
    assert city.dtype == object and None in city.tolist() and "z" * 256 in city.tolist()


def test_slotted_strings_without_the_hash_path() -> None:
    """The strings are told apart by a checked 64-bit hash; on a collision they are
    sorted instead: both give the same rows."""
    data = _text_request(30, seed=7)
    with (
        mock.patch.object(otlp_slots, "_bucket_words", return_value=None),
        mock.patch.object(otlp_slots, "_group_words", return_value=None),
    ):
        fast = otlp_fast.extract_request(data)
    assert fast is not None
    assert_same(fast, generic(data))
    with mock.patch.object(otlp_slots, "_bucket_words", return_value=None):
        fast = otlp_fast.extract_request(data)  # the sort of hashes
    assert fast is not None
    assert_same(fast, generic(data))
    rows = np.array([[3, 0, 1, 2], [3, 0, 1, 2], [1, 0, 0, 0], [3, 0, 1, 3]], dtype=np.uint8)
    found = otlp_slots._distinct_rows(rows)
    assert found is not None
    first, index = found
    assert rows[first[index]].tolist() == rows.tolist() and len(first) == 3


@pytest.mark.parametrize("wide", [1, 24, 10**9])
@pytest.mark.parametrize("seed", [3, 8])
def test_wide_segments_copied_span_by_span_give_the_same_rows(wide: int, seed: int) -> None:
    """Segments of the normalized rows at least ``_WIDE_SEGMENT`` bytes wide are
    copied span by span instead of gathered: every threshold gives the generic
    decoder's rows (1: every segment span by span, 10**9: none)."""
    data = _text_request(40, seed=seed)
    with mock.patch.object(otlp_slots, "_WIDE_SEGMENT", wide):
        fast = otlp_fast.extract_request(data)
    assert fast is not None
    assert_same(fast, generic(data))


def test_slotted_templates_reject_invalid_utf8_like_the_generic_decoder() -> None:
    shape_data = _text_request(10, seed=5)
    marker = "c" * 3  # a short_strings value; swap one occurrence for invalid UTF-8
    raw = marker.encode()
    at = shape_data.index(b"\x0a\x03" + raw)
    data = shape_data[: at + 2] + b"\xff\xfe\xfd" + shape_data[at + 5 :]
    slow = generic(data)
    assert slow.rejected == 1
    fast = otlp_fast.extract_request(data)
    if fast is not None:
        assert_same(fast, slow)
    assert_same(extract_otlp(data), slow)


def test_slotted_templates_check_the_enclosing_lengths() -> None:
    """A string one byte longer with the array length left as it was is not the
    template's layout: the request goes to the generic decoder, which rejects it."""
    data = _text_request(6, seed=6)
    at = data.index(b"\x0a\x03\x0a\x01c")  # element: AnyValue(string_value="c")
    broken = data[:at] + b"\x0a\x04\x0a\x02cc" + data[at + 5 :]  # one byte longer
    with pytest.raises(InvalidPayloadError):
        generic(broken)
    assert otlp_fast.extract_request(broken) is None


# --- the fast path is taken where it matters ----------------------------------------


@pytest.fixture
def factory() -> Iterator[SpanFactory]:
    f = SpanFactory()
    yield f
    f.close()


def test_sdk_exporter_requests_take_the_fast_path(factory: SpanFactory) -> None:
    rng = np.random.default_rng(3)
    spans = []
    for i in range(40):
        n = 4 if i % 3 else 1
        rows = random_rows(rng, n)
        features = {k: v if n > 1 else v[0] for k, v in rows.items()}
        features.pop("plan")  # numeric only: every span fits a few templates
        prediction = [0.25] * n if n > 1 else 0.25
        attrs = prediction_attributes("churn", "7", features, rate=0.5, prediction=prediction)
        spans.append(factory.span("predict churn", attrs))
    spans.append(factory.span("GET /predict", {"http.method": "GET"}))
    data = to_request(spans).SerializeToString()
    fast = otlp_fast.extract_request(data)
    assert fast is not None
    assert_same(fast, generic(data))
    batch = fast.batches[("churn", "7")]
    assert batch.spans == 40 and fast.ignored == 1
    assert batch.rows == sum(4 if i % 3 else 1 for i in range(40))


def test_templates_cover_repeated_layouts() -> None:
    shape = predict_shape(rows=8, features={f"f{i}": "doubles" for i in range(3)}, pid="ascii")
    data = build_request([shape], [0] * 50, seed=1)
    ranges = otlp_scan.span_ranges(data)
    assert ranges is not None and len(ranges) == 50
    template = otlp_scan.build_template(data, *ranges[0])
    assert template is not None and not template.ignored
    rows = otlp_scan.stack_spans(data, ranges, template.length)
    assert otlp_scan.match(template, rows).all()
    fast = otlp_fast.extract_request(data)
    assert fast is not None
    assert_same(fast, generic(data))


def test_a_changed_structural_byte_breaks_the_match() -> None:
    data = build_request(
        [predict_shape(rows=2, features={"age": "doubles"}, prediction=None, rate=None)],
        [0, 0],
        seed=2,
    )
    ranges = otlp_scan.span_ranges(data)
    assert ranges is not None
    template = otlp_scan.build_template(data, *ranges[0])
    assert template is not None
    start, end = ranges[1]
    span = bytearray(data[start:end])
    key = span.index(b"ml.feature.age")
    span[key + len("ml.feature.")] = ord("b")  # ml.feature.bge: another column
    rows = otlp_scan.stack_spans(bytes(span), [(0, len(span))], len(span))
    assert not otlp_scan.match(template, rows)[0]


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\x05\x12\x03\x12\x01",  # truncated span
        b"\x0a\xff",  # truncated length
        b"\x0b\x0c",  # a group
        b"\xff" * 12,  # overlong varint
    ],
)
def test_malformed_requests_fail_like_the_generic_decoder(payload: bytes) -> None:
    try:
        expected: Extraction | str = generic(payload)
    except InvalidPayloadError as exc:
        expected = str(exc)
    if isinstance(expected, str):
        with pytest.raises(InvalidPayloadError) as error:
            extract_otlp(payload)
        assert str(error.value) == expected
    else:  # an unknown empty group: a valid request without spans
        assert_same(extract_otlp(payload), expected)
    assert otlp_fast.extract_request(payload) is None  # left to the generic decoder


def test_empty_request() -> None:
    fast = otlp_fast.extract_request(b"")
    assert fast is not None
    assert_same(fast, generic(b""))


@pytest.mark.parametrize("block", [1, 64, 10**9])
@pytest.mark.parametrize("seed", [2, 9])
def test_row_blocks_of_temporaries_give_the_same_rows(block: int, seed: int) -> None:
    """The template match, the narrow-segment gather and the string collision check
    work in row blocks of about ``_BLOCK_BYTES`` / ``_GATHER_BYTES`` bytes (small
    temporaries): every block size (1 byte: one row at a time; 10**9: the whole
    request at once) gives the generic decoder's rows, for text and numeric spans."""
    rng = np.random.default_rng(seed)
    text = _text_request(40, seed=seed)
    numeric = build_request(
        [predict_shape(features={"a": "doubles", "b": "wide_ints", "c": "doubles_nan"})],
        [0] * 30,
        seed=seed,
    )
    for data in (text, numeric):
        with (
            mock.patch.object(otlp_scan, "_BLOCK_BYTES", block),
            mock.patch.object(otlp_slots, "_GATHER_BYTES", block),
        ):
            fast = otlp_fast.extract_request(data)
        assert fast is not None
        assert_same(fast, generic(data))
    rows = rng.integers(0, 256, size=(37, 24), dtype=np.uint8)
    rows[::3] = rows[0]
    mask = rng.integers(0, 2**63, size=3, dtype=np.uint64)
    template = otlp_scan.SpanTemplate(
        length=24, words=3, mask=mask, expected=rows[0].view(np.uint64) & mask
    )
    whole = ((rows.view(np.uint64) & template.mask) == template.expected).all(axis=1)
    with mock.patch.object(otlp_scan, "_BLOCK_BYTES", block):
        assert otlp_scan.match(template, rows).tolist() == whole.tolist()
    assert whole[::3].all() and not whole.all()


@pytest.mark.parametrize("block", [1, 16, 10**9])
def test_hash_collisions_found_in_every_row_block(block: int) -> None:
    """Two different rows of words with the same 64-bit hash: ``_group_words``
    declines (the caller sorts the rows) whichever block holds the second row."""
    h = int(otlp_slots._HASH)
    mask = 2**64 - 1
    a, b = 12345, 678
    twin_a = a + 1
    twin_b = ((a * h) & mask) ^ b ^ ((twin_a * h) & mask)
    words = np.array([[7, 7], [a, b], [7, 7], [9, 1], [twin_a, twin_b]], dtype=np.uint64)
    with mock.patch.object(otlp_slots, "_GATHER_BYTES", block):
        assert otlp_slots._group_words(words) is None
        found = otlp_slots._group_words(words[:4])
    assert found is not None
    first, index = found
    assert words[first[index]].tolist() == words[:4].tolist() and len(first) == 3


@pytest.mark.parametrize("size", [0, 1, 5, 15, 16, 17, 40])
def test_short_keys_at_the_end_of_the_buffer(size: int) -> None:
    """Short-string keys read 16 bytes from the length byte on; strings in the last
    16 bytes (and buffers shorter than 16) read zeros past the end, as a zero-padded
    copy of the whole buffer would."""
    rng = np.random.default_rng(size)
    starts_list, sizes_list, parts = [], [], []
    position = 0
    for _ in range(6):
        n = int(rng.integers(0, 15))
        parts.append(bytes([n]) + bytes(rng.integers(1, 256, size=n, dtype=np.uint8)))
        starts_list.append(position + 1)
        sizes_list.append(n)
        position += n + 1
    body = b"".join(parts)
    buf_bytes = bytes(rng.integers(0, 256, size=size, dtype=np.uint8)) + body
    buf = np.frombuffer(buf_bytes, dtype=np.uint8)
    starts = np.asarray(starts_list, dtype=np.intp) + size
    sizes = np.asarray(sizes_list, dtype=np.intp)
    keys = otlp_slots._short_keys(buf, starts, sizes)
    assert keys is not None
    padded = np.concatenate([buf, np.zeros(16, dtype=np.uint8)])
    for key, start, n in zip(keys.tolist(), starts.tolist(), sizes.tolist(), strict=True):
        expected = np.zeros(16, dtype=np.uint8)
        if n:
            expected[: n + 1] = padded[start - 1 : start + n]
        assert key == expected.view("<u8").tolist()
    assert not np.shares_memory(keys, buf)


@pytest.mark.parametrize("seed", range(4))
def test_fixed_width_gather_equals_the_window_gather(seed: int) -> None:
    """``_gather`` (one void item per row) gives the rows of the strided window view,
    for any width, negative and last-window indices, read-only, offset and
    non-contiguous buffers, and its rows are a fresh writable copy."""
    rng = np.random.default_rng(seed)
    data = bytes(rng.integers(0, 256, size=int(rng.integers(1, 300)), dtype=np.uint8))
    whole = np.frombuffer(b"xyz" + data, dtype=np.uint8)
    buffers = [np.frombuffer(data, dtype=np.uint8), whole[3:], np.repeat(whole, 2)[::2]]
    for buf in buffers:
        for width in (0, 1, 3, 16, 28, buf.size):
            if width > buf.size:
                continue
            n_windows = buf.size - width + 1
            at = rng.integers(-n_windows, n_windows, size=50)
            at[:2] = [0, n_windows - 1]
            got = otlp_slots._gather(buf, width, at)
            expected = otlp_slots._windows(buf, width)[at]
            assert got.dtype == np.uint8 and got.shape == (50, width)
            assert got.tolist() == expected.tolist()
            assert got.flags.writeable and not np.shares_memory(got, buf)


@pytest.mark.parametrize("seed", range(3))
def test_grouping_by_one_sort_of_hash_and_row_equals_unique_rows(seed: int) -> None:
    """``_group_words`` by one sort of (shortened hash, row index) gives the groups of
    ``np.unique`` over the rows and of the argsort of the full hash, with each group's
    first row as its representative."""
    rng = np.random.default_rng(seed)
    for k in (1, 2, 3):
        for n in (0, 1, 2, 3, 17, 1000, 5000):
            high = 4 if n % 2 else 2**63
            words = rng.integers(0, high, size=(n, k), dtype=np.uint64)
            found = otlp_slots._group_words(words)
            with mock.patch.object(otlp_slots, "_INDEX_BITS", 0):  # argsort path
                by_argsort = otlp_slots._group_words(words)
            assert found is not None and by_argsort is not None
            first, index = found
            _, unique_first, unique_index = np.unique(
                words, axis=0, return_index=True, return_inverse=True
            )
            assert words[first[index]].tolist() == words.tolist()
            assert first.size == unique_first.size == by_argsort[0].size
            # The same partition of the rows as np.unique's and the argsort's: every
            # row labelled by the first row of its group.
            expected = unique_first[unique_index.reshape(-1)].tolist()
            for groups, rows in (found, by_argsort):
                lowest = np.full(groups.size, n, dtype=np.intp)
                np.minimum.at(lowest, rows, np.arange(n))
                assert lowest[rows].tolist() == expected
            if k > 1:
                assert sorted(first.tolist()) == sorted(unique_first.tolist())


def test_rows_sharing_the_shortened_hash_are_found() -> None:
    """Two different rows whose hashes differ only in the bits that hold the row
    index: ``None`` (the caller then sorts the rows), never one group."""
    # The second row's last word times the hash constant is 1.
    inverse = pow(0x9E3779B97F4A7C15, -1, 1 << 64)
    words = np.array([[0, 0], [0, inverse]], dtype=np.uint64)  # mixed hashes 0 and 1
    assert otlp_slots._group_words(words) is None
    with mock.patch.object(otlp_slots, "_INDEX_BITS", 0):
        found = otlp_slots._group_words(words)
    assert found is not None and found[0].size == 2
    keys = otlp_slots._short_keys(
        np.frombuffer(b"\x01a\x01b\x01a", dtype=np.uint8),
        np.array([1, 3, 5], dtype=np.intp),
        np.array([1, 1, 1], dtype=np.intp),
    )
    assert keys is not None
    texts, index, bad = otlp_slots._read_strings(
        np.frombuffer(b"\x01a\x01b\x01a", dtype=np.uint8),
        np.array([1, 3, 5], dtype=np.intp),
        np.array([1, 1, 1], dtype=np.intp),
    ) or ([], None, None)
    assert [texts[i] for i in index.tolist()] == ["a", "b", "a"] and not bad.any()


def test_long_short_strings_differing_at_the_end_keep_the_hash_path() -> None:
    """Strings of 8-14 bytes that differ only in their last bytes (the low bits of
    the second key word) still group by the hash (no fall back to sorting rows)."""
    values = [f"abcdefg{chr(48 + i)}{chr(48 + j)}z".encode() for i in range(10) for j in range(10)]
    values *= 30
    buf = np.frombuffer(b"".join(bytes([len(v)]) + v for v in values), dtype=np.uint8)
    sizes = np.array([len(v) for v in values], dtype=np.intp)
    starts = np.cumsum(sizes + 1) - sizes
    keys = otlp_slots._short_keys(buf, starts, sizes)
    assert keys is not None
    found = otlp_slots._group_words(keys)
    assert found is not None and found[0].size == 100
    assert [values[i] for i in found[0][found[1]].tolist()] == values


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(text_shapes(), min_size=1, max_size=3),
    order=st.lists(st.integers(0, 2), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
)
def test_narrow_walk_equals_the_general_walk(
    shapes: list[dict[str, Any]], order: list[int], seed: int
) -> None:
    """``match`` with the narrow walk (one-byte lengths; other spans walked by
    ``_walk``) and with the general walk alone: the same spans, rows and values."""
    data = build_request(shapes, [i % len(shapes) for i in order], seed)
    ranges = otlp_scan.span_ranges(data)
    assert ranges is not None
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.asarray([s for s, _ in ranges], dtype=np.intp)
    lengths = np.asarray([e - s for s, e in ranges], dtype=np.intp)
    for s, e in ranges[:3]:
        built = otlp_slots.build(data, s, e)
        if not isinstance(built, otlp_slots.SlottedTemplate):
            continue
        found = otlp_slots.match(built, buf, starts, lengths)
        with mock.patch.object(otlp_slots, "_walk_narrow", return_value=None):
            general = otlp_slots.match(built, buf, starts, lengths)
        assert (found is None) == (general is None)
        if found is not None and general is not None:
            for a, b in zip(found, general, strict=True):
                assert a.dtype == b.dtype and a.tolist() == b.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bucket_grouping_equals_unique_rows(seed: int) -> None:
    """Rows grouped by the bucket table: every row's group holds equal rows, one group
    per distinct row; distinct rows sharing a bucket give ``None``."""
    rng = np.random.default_rng(seed)
    for k in (1, 2, 3):
        distinct = rng.integers(0, 2**63, size=(40, k), dtype=np.uint64)
        words = distinct[rng.integers(0, 40, size=2000)]
        found = otlp_slots._bucket_words(words)
        assert found is not None
        first, index = found
        assert words[first[index]].tolist() == words.tolist()
        assert first.size == np.unique(words, axis=0).shape[0]
        assert index.dtype == np.intp and first.dtype == np.intp
        with mock.patch.object(otlp_slots, "_BUCKET_BITS", 1):  # 40 rows, 2 buckets
            assert otlp_slots._bucket_words(words) is None
        with mock.patch.object(otlp_slots, "_BUCKET_GROUPS", 39):  # many distinct rows
            assert otlp_slots._bucket_words(words) is None
    many = rng.integers(0, 2**63, size=(5000, 2), dtype=np.uint64)
    assert otlp_slots._bucket_words(many) is None  # left to the sort of hashes
