"""Turn a model call's input and output into span attributes, at a cost independent of batch size.

Input adapters (numpy 1-D row / 2-D batch, pandas DataFrame / Series, dict, list
of dicts, list of lists, pydantic models, scalars) expose the number of rows and
copy out only the selected rows. Output adapters do the same for class labels,
probabilities (value = class, score = max probability), regression values and
dicts of outputs. Values become OpenTelemetry attribute values following
docs/architecture.md, "Span -> drift data": a scalar when the call had one
row, else a homogeneous array aligned with ``ml.sample.indices``; missing
numbers are NaN and missing strings ``""``. Anything not understood yields no
features, never an error.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeltrace import semconv
from modeltrace.privacy import HASH, KEEP, PrivacyPolicy

NAN = float("nan")
_INT64_MAX = 2**63 - 1
_MISSING_TYPE_NAMES = frozenset({"NAType", "NaTType"})
_CONTAINERS = (list, tuple, dict, set, frozenset, np.ndarray)
_FLOAT_TYPES = frozenset({float, bool})
_NUMBER_TYPES = frozenset({float, bool, int})

PROBA_OPERATIONS = frozenset({"predict_proba", "predict_log_proba"})
_VALUE_KEYS = ("prediction", "predictions", "label", "labels", "class", "value", "values", "output")
_SCORE_KEYS = ("score", "scores", "probability", "probabilities", "confidence", "proba")


@dataclass(frozen=True)
class CaptureLimits:
    """Per-call caps that keep capture cheap and spans under the SDK's limits."""

    max_rows: int = 8
    max_features: int = 100
    max_string_length: int = 256


# ---------------------------------------------------------------- values ----


def scalar_value(value: Any, max_len: int) -> bool | int | float | str:
    """One value as an attribute scalar; missing (None, NaN, pd.NA, NaT) is NaN."""
    kind = type(value)
    if kind is float or kind is bool:
        return value
    if kind is str:
        return value if len(value) <= max_len else value[:max_len]
    if kind is int:
        return value if -_INT64_MAX <= value <= _INT64_MAX else float(value)
    if value is None:
        return NAN
    if isinstance(value, np.generic):
        return scalar_value(value.item(), max_len)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[: max_len // 2]).hex()
    if kind.__name__ in _MISSING_TYPE_NAMES:
        return NAN
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return scalar_value(int(value), max_len)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return scalar_value(str.__str__(value), max_len)
    if isinstance(value, _CONTAINERS):
        return f"<{kind.__name__}>"
    text = str(value)
    return text if len(text) <= max_len else text[:max_len]


def column_value(values: Sequence[Any], max_len: int) -> Any:
    """A column of selected rows as one homogeneous attribute array (NaN / "" for missing)."""
    items = [scalar_value(v, max_len) for v in values]
    has_str = has_float = has_int = has_bool = False
    for item in items:
        kind = type(item)
        if kind is str:
            has_str = True
        elif kind is float:
            has_float = True
        elif kind is int:
            has_int = True
        else:
            has_bool = True
    if has_str:
        if not (has_float or has_int or has_bool):
            return items
        return [
            item
            if type(item) is str
            else ("" if type(item) is float and math.isnan(item) else str(item))
            for item in items
        ]
    if has_float or (has_int and has_bool):
        return [float(item) for item in items]
    return items


# ------------------------------------------------------------ row choice ----


def choose_rows(n_rows: int, max_rows: int) -> list[int]:
    """Up to ``max_rows`` row indices of ``n_rows``, uniformly without replacement, sorted."""
    if n_rows <= max_rows:
        return list(range(n_rows))
    if max_rows <= 0:
        return []
    return sorted(random.sample(range(n_rows), max_rows))


# ---------------------------------------------------------------- inputs ----

_KEYS_CACHE_LIMIT = 4096
_POSITIONAL_CACHE_LIMIT = 64


class FeatureKeys:
    """Per-configuration cache: feature name -> (attribute key, privacy action).

    Built once per decorated function and settings generation, so a call does one
    dict lookup per feature instead of a string concatenation and a policy
    decision; positional inputs (numpy, lists) reuse whole name lists.
    """

    def __init__(self, policy: PrivacyPolicy) -> None:
        self.policy = policy
        # Read directly on hot loops (a method call per feature costs more than the lookup).
        self.cached: dict[str, tuple[str, int]] = {}
        # (width, kept) -> (names source object, entries, plain keys); the source is
        # kept alive by the cache, so an identity check cannot see a recycled id.
        self._positional: dict[
            tuple[int, int], tuple[Any, list[tuple[str, int]], tuple[str, ...] | None]
        ] = {}
        # Mapping inputs: (names in order, max_features) -> attribute keys when every
        # name is kept as is and none is left out (else None: the per-name loop).
        self.plain_layouts: dict[tuple[tuple[Any, ...], int], tuple[str, ...] | None] = {}
        # The last (names, max_features, keys) looked up: comparing a tuple of the same
        # name objects is cheaper than hashing it for the dict above.
        self.last_layout: tuple[tuple[Any, ...], int, tuple[str, ...] | None] = ((), -1, None)

    def entry(self, name: str) -> tuple[str, int]:
        found = self.cached.get(name)
        if found is None:
            found = (semconv.FEATURE_PREFIX + name, self.policy.action(name))
            if len(self.cached) < _KEYS_CACHE_LIMIT:
                self.cached[name] = found
        return found

    def plain_layout(self, names: tuple[Any, ...], max_features: int) -> tuple[str, ...] | None:
        """Attribute keys of a mapping with these names, if all are kept (KEEP) and none cut."""
        layout_key = (names, max_features)
        if layout_key in self.plain_layouts:
            return self.plain_layouts[layout_key]
        plain: tuple[str, ...] | None = None
        if len(names) <= max_features and all(type(name) is str for name in names):
            entries = [self.entry(name) for name in names]
            if all(action == KEEP for _, action in entries):
                plain = tuple(key for key, _ in entries)
        if len(self.plain_layouts) < _POSITIONAL_CACHE_LIMIT:
            self.plain_layouts[layout_key] = plain
        return plain

    def positional(
        self, width: int, kept: int, given: Sequence[str] | None, model: Any
    ) -> list[tuple[str, int]]:
        """Entries of the first ``kept`` of ``width`` positional features (names per SPEC)."""
        return self.positional_plan(width, kept, given, model)[0]

    def positional_plan(
        self, width: int, kept: int, given: Sequence[str] | None, model: Any
    ) -> tuple[list[tuple[str, int]], tuple[str, ...] | None]:
        """(entries, their attribute keys if every action is KEEP, else None)."""
        source: Any = None
        if given is not None and len(given) == width:
            source = given
        else:
            model_names = getattr(model, "feature_names_in_", None) if model is not None else None
            if model_names is not None and len(model_names) == width:
                source = model_names
        cached = self._positional.get((width, kept))
        if cached is not None and cached[0] is source:
            return cached[1], cached[2]
        names = _default_names(width, source, None)[:kept]
        entries = [self.entry(name) for name in names]
        plain = (
            tuple(key for key, _ in entries)
            if all(action == KEEP for _, action in entries)
            else None
        )
        if len(self._positional) < _POSITIONAL_CACHE_LIMIT or (width, kept) in self._positional:
            self._positional[(width, kept)] = (source, entries, plain)
        return entries, plain


class InputView:
    """Rows of a model input: their count and a copy of selected rows, column-wise."""

    n_rows: int = 1
    numeric: bool = False

    def columns(self, rows: list[int], max_features: int) -> tuple[list[str], list[list[Any]], int]:
        """(names, columns of the selected rows, number of features left out)."""
        raise TypeError("InputView subclasses define columns()")

    def add_features(
        self,
        rows: list[int],
        limits: CaptureLimits,
        keys: FeatureKeys,
        attributes: dict[str, Any],
    ) -> None:
        """Add ``ml.feature.*`` (and ``ml.features.truncated``) of ``rows`` to ``attributes``."""
        names, cols, left_out = self.columns(rows, limits.max_features)
        entries = [keys.entry(name) for name in names]
        _add_columns(entries, cols, self.n_rows == 1, self.numeric, limits, keys, attributes)
        if left_out:
            attributes[semconv.FEATURES_TRUNCATED] = left_out


def _add_columns(
    entries: Sequence[tuple[str, int]],
    cols: Sequence[list[Any]],
    single: bool,
    numeric: bool,
    limits: CaptureLimits,
    keys: FeatureKeys,
    attributes: dict[str, Any],
) -> None:
    max_len = limits.max_string_length
    for (key, action), col in zip(entries, cols, strict=True):
        if action == KEEP:
            if single:
                attributes[key] = col[0] if numeric else scalar_value(col[0], max_len)
            else:
                attributes[key] = col if numeric else column_value(col, max_len)
        elif action == HASH:
            hashed = [keys.policy.hash_value(scalar_value(v, max_len)) for v in col]
            attributes[key] = hashed[0] if single else column_value(hashed, max_len)


def _default_names(width: int, given: Sequence[str] | None, model: Any) -> list[str]:
    """``feature_names`` if it fits, else the model's ``feature_names_in_``, else f0..fN."""
    if given is not None and len(given) == width:
        return [str(n) for n in given]
    model_names = getattr(model, "feature_names_in_", None) if model is not None else None
    if model_names is not None and len(model_names) == width:
        return [str(n) for n in model_names]
    return [f"f{i}" for i in range(width)]


def _is_numeric_dtype(array: np.ndarray) -> bool:
    """True when ``tolist()`` of the array gives attribute-ready bool/int/float values."""
    kind = array.dtype.kind
    return kind in "bif" or (kind == "u" and array.dtype.itemsize < 8)


class _ArrayInput(InputView):
    """A 2-D numpy array (1-D rows are reshaped): one fancy-index and one ``tolist()``."""

    def __init__(self, array: np.ndarray, names: Sequence[str] | None, model: Any) -> None:
        self._array = array
        self.n_rows = array.shape[0]
        self._given = names
        self._model = model

    @property
    def numeric(self) -> bool:  # type: ignore[override]
        return _is_numeric_dtype(self._array)

    def columns(self, rows: list[int], max_features: int) -> tuple[list[str], list[list[Any]], int]:
        width = self._array.shape[1]
        kept = min(width, max_features)
        names = _default_names(width, self._given, self._model)[:kept]
        block = self._array[rows, :kept] if kept < width else self._array[rows]
        return names, block.T.tolist(), width - kept

    def add_features(
        self,
        rows: list[int],
        limits: CaptureLimits,
        keys: FeatureKeys,
        attributes: dict[str, Any],
    ) -> None:
        array = self._array
        width = array.shape[1]
        kept = min(width, limits.max_features)
        entries, plain = keys.positional_plan(width, kept, self._given, self._model)
        numeric = _is_numeric_dtype(array)
        if self.n_rows == 1:
            values = (array[0, :kept] if kept < width else array[0]).tolist()
            if numeric and plain is not None:
                # tolist() of a numeric dtype gives attribute-ready values (see above).
                attributes.update(zip(plain, values, strict=True))
            elif numeric:
                for (key, action), value in zip(entries, values, strict=True):
                    if action == KEEP:
                        attributes[key] = value
                    elif action == HASH:
                        attributes[key] = keys.policy.hash_value(value)
            else:
                _add_columns(entries, [[v] for v in values], True, False, limits, keys, attributes)
        else:
            block = array[rows, :kept] if kept < width else array[rows]
            _add_columns(entries, block.T.tolist(), False, numeric, limits, keys, attributes)
        if width > kept:
            attributes[semconv.FEATURES_TRUNCATED] = width - kept


class _FlatRowInput(_ArrayInput):
    """A 1-D numpy array: one row, reshaped to 2-D only when the general path needs it."""

    def __init__(self, row: np.ndarray, names: Sequence[str] | None, model: Any) -> None:
        self._row = row
        self.n_rows = 1
        self._given = names
        self._model = model

    @property
    def _array(self) -> np.ndarray:  # type: ignore[override]
        return self._row.reshape(1, -1)

    def add_features(
        self,
        rows: list[int],
        limits: CaptureLimits,
        keys: FeatureKeys,
        attributes: dict[str, Any],
    ) -> None:
        row = self._row
        width = row.shape[0]
        if width <= limits.max_features and _is_numeric_dtype(row):
            # _ArrayInput.add_features's one-row numeric case without the reshape.
            plain = keys.positional_plan(width, width, self._given, self._model)[1]
            if plain is not None:
                attributes.update(zip(plain, row.tolist(), strict=True))
                return
        super().add_features(rows, limits, keys, attributes)


class _FrameInput(InputView):
    def __init__(self, frame: Any) -> None:
        self._frame = frame
        self.n_rows = len(frame)

    def columns(self, rows: list[int], max_features: int) -> tuple[list[str], list[list[Any]], int]:
        width = self._frame.shape[1]
        kept = min(width, max_features)
        block = self._frame.iloc[rows, :kept]
        names = [str(c) for c in block.columns]
        return names, block.to_numpy().T.tolist(), width - kept


class _MappingRow(InputView):
    """One row given as a mapping (a dict, a pandas Series, a pydantic model's fields).

    Series and pydantic models are converted only when their features are captured.
    """

    def __init__(self, row: Any, convert: Callable[[Any], Mapping[Any, Any]] | None = None) -> None:
        self._row = row
        self._convert = convert

    @property
    def _mapping(self) -> Mapping[Any, Any]:
        convert = self._convert
        return self._row if convert is None else convert(self._row)

    def columns(self, rows: list[int], max_features: int) -> tuple[list[str], list[list[Any]], int]:
        mapping = self._mapping
        names = [str(k) for k in mapping]
        kept = names[:max_features]
        values = list(mapping.values())
        return kept, [[v] for v in values[: len(kept)]], len(names) - len(kept)

    def add_features(
        self,
        rows: list[int],
        limits: CaptureLimits,
        keys: FeatureKeys,
        attributes: dict[str, Any],
    ) -> None:
        if not rows:
            return
        mapping = self._mapping
        if type(mapping) is dict:
            # Fast path, same outcome as the loop below: every name kept as is and
            # every value already an attribute number (floats/bools, in-range ints).
            names = tuple(mapping)
            last = keys.last_layout
            if names == last[0] and last[1] == limits.max_features:
                plain = last[2]
            else:
                plain = keys.plain_layout(names, limits.max_features)
                keys.last_layout = (names, limits.max_features, plain)
            if plain is not None:
                values = mapping.values()
                if _FLOAT_TYPES.issuperset(map(type, values)) or (
                    _NUMBER_TYPES.issuperset(map(type, values))
                    and min(values) >= -_INT64_MAX
                    and max(values) <= _INT64_MAX
                ):
                    attributes.update(zip(plain, values, strict=True))
                    return
        max_len = limits.max_string_length
        remaining = limits.max_features
        left_out = 0
        cached = keys.cached
        for name, value in mapping.items():
            if remaining <= 0:
                left_out += 1
                continue
            remaining -= 1
            found = cached.get(name) if type(name) is str else None
            if found is None:
                found = keys.entry(name if type(name) is str else str(name))
            key, action = found
            if action == KEEP:
                kind = type(value)
                if (
                    kind is float
                    or kind is bool
                    or (kind is int and -_INT64_MAX <= value <= _INT64_MAX)
                ):
                    attributes[key] = value
                else:
                    attributes[key] = scalar_value(value, max_len)
            elif action == HASH:
                attributes[key] = keys.policy.hash_value(scalar_value(value, max_len))
        if left_out:
            attributes[semconv.FEATURES_TRUNCATED] = left_out


class _RowsOfMappings(InputView):
    """A list of dicts (or of pydantic models): one mapping per row."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self._rows = rows
        self.n_rows = len(rows)

    def columns(self, rows: list[int], max_features: int) -> tuple[list[str], list[list[Any]], int]:
        mappings = [_as_mapping(self._rows[i]) for i in rows]
        names: dict[str, None] = {}
        for mapping in mappings:
            for key in mapping:
                names.setdefault(key, None)
        all_names = list(names)
        kept = all_names[:max_features]
        cols = [[m.get(name) for m in mappings] for name in kept]
        return [str(n) for n in kept], cols, len(all_names) - len(kept)


class _RowsOfSequences(InputView):
    """A list of lists/tuples: one sequence per row, positional features."""

    def __init__(self, rows: Sequence[Any], names: Sequence[str] | None, model: Any) -> None:
        self._rows = rows
        self.n_rows = len(rows)
        self._given = names
        self._model = model

    def columns(self, rows: list[int], max_features: int) -> tuple[list[str], list[list[Any]], int]:
        selected = [list(self._rows[i]) for i in rows]
        width = max((len(r) for r in selected), default=0)
        kept = min(width, max_features)
        names = _default_names(width, self._given, self._model)[:kept]
        cols = [[r[j] if j < len(r) else None for r in selected] for j in range(kept)]
        return names, cols, width - kept


def _as_mapping(obj: Any) -> Mapping[Any, Any]:
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)
    if dump is not None and hasattr(type(obj), "model_fields"):
        result = dump()
        return result if isinstance(result, Mapping) else {}
    legacy = getattr(obj, "dict", None)
    if legacy is not None and hasattr(type(obj), "__fields__"):
        result = legacy()
        return result if isinstance(result, Mapping) else {}
    return {}


def _series_mapping(series: Any) -> dict[str, Any]:
    return {str(k): v for k, v in series.items()}


def _is_pydantic(obj: Any) -> bool:
    cls = type(obj)
    return hasattr(cls, "model_fields") or (
        hasattr(cls, "__fields__") and callable(getattr(obj, "dict", None))
    )


def _is_scalar(obj: Any) -> bool:
    return obj is None or isinstance(obj, (str, int, float, bool, bytes, np.generic))


def adapt_input(
    obj: Any, feature_names: Sequence[str] | None, model: Any = None
) -> InputView | None:
    """The view of a model input, or None when the input is not understood.

    Positional inputs (numpy, lists) take their feature names from
    ``feature_names``, else ``model.feature_names_in_``, else ``f0..fN``.
    """
    names = feature_names
    kind = type(obj)
    if kind is dict:
        return _MappingRow(obj)
    if kind is np.ndarray or isinstance(obj, np.ndarray):
        if obj.ndim == 2:
            return _ArrayInput(obj, names, model)
        if obj.ndim == 1:
            return _FlatRowInput(obj, names, model)
        if obj.ndim == 0:
            return _ArrayInput(obj.reshape(1, 1), names, model)
        return None
    module = kind.__module__
    if module.startswith("pandas"):
        kind_name = kind.__name__
        if kind_name == "DataFrame":
            return _FrameInput(obj)
        if kind_name == "Series":
            return _MappingRow(obj, _series_mapping)
        return None
    if isinstance(obj, Mapping):
        return _MappingRow(obj)
    if isinstance(obj, (list, tuple)):
        if not obj:
            return _RowsOfSequences(obj, names, model)
        first = obj[0]
        if isinstance(first, Mapping) or _is_pydantic(first):
            return _RowsOfMappings(obj)
        if isinstance(first, (list, tuple, np.ndarray)):
            return _RowsOfSequences(obj, names, model)
        if all(_is_scalar(v) for v in obj[:64]):
            return _RowsOfSequences([obj], names, model)
        return None
    if _is_pydantic(obj):
        return _MappingRow(obj, _as_mapping)
    if _is_scalar(obj):
        return _RowsOfSequences([[obj]], names, model)
    return None


def feature_attributes(
    view: InputView,
    rows: list[int],
    limits: CaptureLimits,
    keys: FeatureKeys,
    attributes: dict[str, Any],
) -> None:
    """Add ``ml.feature.*`` (and ``ml.features.truncated``) for ``rows`` to ``attributes``."""
    view.add_features(rows, limits, keys, attributes)


# --------------------------------------------------------------- outputs ----


class OutputView:
    """Rows of a model output and their (value, score) for selected rows."""

    def __init__(self, rows: Any, n_rows: int, single: bool) -> None:
        self._rows = rows
        self.n_rows = n_rows
        self.single = single

    def select(self, rows: list[int]) -> list[Any]:
        if self.single:
            return [self._rows]
        if isinstance(self._rows, np.ndarray):
            return self._rows[rows].tolist()
        return [self._rows[i] for i in rows]


class _ColumnarOutput(OutputView):
    """A dict of aligned sequences, e.g. ``{"labels": [...], "scores": [...]}``."""

    def __init__(self, values: Any, scores: Any, n_rows: int) -> None:
        super().__init__(values, n_rows, single=False)
        self._scores = scores

    def select(self, rows: list[int]) -> list[Any]:
        values = [self._rows[i] for i in rows]
        if self._scores is None:
            return values
        return [{"value": v, "score": self._scores[i]} for v, i in zip(values, rows, strict=True)]


def _first_key(mapping: Mapping[Any, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in mapping:
            return key
    return None


def adapt_output(obj: Any) -> OutputView | None:
    """The view of a model output, or None when it is not understood."""
    kind = type(obj)
    if kind is int or kind is float or kind is str or kind is bool:
        return OutputView(obj, 1, single=True)
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return OutputView(obj.item(), 1, single=True)
        if obj.ndim in (1, 2):
            return OutputView(obj, obj.shape[0], single=False)
        return None
    if type(obj).__module__.startswith("pandas"):
        kind_name = type(obj).__name__
        if kind_name in ("Series", "DataFrame"):
            array = obj.to_numpy()
            return OutputView(array, array.shape[0], single=False)
        return None
    if isinstance(obj, Mapping):
        value_key = _first_key(obj, _VALUE_KEYS)
        score_key = _first_key(obj, _SCORE_KEYS)
        values = obj.get(value_key) if value_key is not None else None
        if isinstance(values, (list, tuple, np.ndarray)) and not _is_probability_row(values):
            scores = obj.get(score_key) if score_key is not None else None
            if scores is not None and (
                not isinstance(scores, (list, tuple, np.ndarray)) or len(scores) != len(values)
            ):
                scores = None
            return _ColumnarOutput(values, scores, len(values))
        return OutputView(obj, 1, single=True)
    if isinstance(obj, (list, tuple)):
        return OutputView(obj, len(obj), single=False)
    if _is_scalar(obj):
        return OutputView(obj, 1, single=True)
    return None


def _is_probability_row(row: Any) -> bool:
    try:
        values = [float(v) for v in row]
    except (TypeError, ValueError):
        return False
    if len(values) < 2 or any(not (0.0 <= v <= 1.0) for v in values):
        return False
    return abs(sum(values) - 1.0) <= 1e-3


def _row_prediction(
    row: Any, operation: str, classes: Sequence[Any] | np.ndarray | None, max_len: int
) -> tuple[Any, float | None]:
    """(value, score) of one output row."""
    if isinstance(row, Mapping):
        value_key = _first_key(row, _VALUE_KEYS)
        score_key = _first_key(row, _SCORE_KEYS)
        value = scalar_value(row[value_key], max_len) if value_key is not None else NAN
        score = row.get(score_key) if score_key is not None else None
        if isinstance(score, (list, tuple, np.ndarray)):
            score = _as_float_or_none(max(score)) if len(score) else None
        else:
            score = _as_float_or_none(score)
        return value, score
    if isinstance(row, (list, tuple, np.ndarray)):
        values = list(row)
        if len(values) == 1:
            return scalar_value(values[0], max_len), None
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            return NAN, None
        if operation == "predict_log_proba":
            numbers = [math.exp(v) for v in numbers]
        elif operation not in PROBA_OPERATIONS and not _is_probability_row(numbers):
            if operation == "decision_function" and numbers:
                best = max(range(len(numbers)), key=numbers.__getitem__)
                return _class_of(best, classes, max_len), None
            return NAN, None
        if not numbers:
            return NAN, None
        best = max(range(len(numbers)), key=numbers.__getitem__)
        return _class_of(best, classes, max_len), numbers[best]
    return scalar_value(row, max_len), None


def _class_of(index: int, classes: Sequence[Any] | np.ndarray | None, max_len: int) -> Any:
    if classes is not None and index < len(classes):
        return scalar_value(classes[index], max_len)
    return index


def _as_float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def prediction_columns(
    view: OutputView,
    rows: list[int],
    operation: str,
    model: Any,
    max_len: int,
) -> tuple[list[Any], list[float] | None]:
    """(values, scores) of the selected output rows; scores None when none is known."""
    # Fast paths: a plain number, a 1-D numeric array (labels or regression values).
    output = view._rows
    if view.single:
        kind = type(output)
        if kind is float or kind is bool or (kind is int and -_INT64_MAX <= output <= _INT64_MAX):
            return [output], None
    elif (
        type(view) is OutputView
        and type(output) is np.ndarray
        and output.ndim == 1
        and _is_numeric_dtype(output)
    ):
        return output[rows].tolist(), None
    classes = getattr(model, "classes_", None) if model is not None else None
    if classes is not None and not isinstance(classes, (list, tuple, np.ndarray)):
        classes = None
    pairs = [_row_prediction(r, operation, classes, max_len) for r in view.select(rows)]
    values = [p[0] for p in pairs]
    scores = [p[1] for p in pairs]
    if all(s is None for s in scores):
        return values, None
    return values, [NAN if s is None else s for s in scores]


def prediction_attributes(
    values: list[Any], scores: list[float] | None, single: bool, attributes: dict[str, Any]
) -> None:
    """Add ``ml.prediction.value`` / ``ml.prediction.score`` (scalar if one row, else arrays)."""
    if not values:
        return
    if single:
        attributes[semconv.PREDICTION_VALUE] = values[0]
        if scores is not None:
            attributes[semconv.PREDICTION_SCORE] = scores[0]
        return
    attributes[semconv.PREDICTION_VALUE] = column_value(values, 1 << 30)
    if scores is not None:
        attributes[semconv.PREDICTION_SCORE] = [float(s) for s in scores]
