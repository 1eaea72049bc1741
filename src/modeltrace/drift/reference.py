"""The training-time ``Reference`` a production window is compared with.

``Reference.from_data`` summarises a training (or validation) set per feature:
its kind (numeric or categorical), bins fixed from the reference quantiles
(numeric) or its top-K categories plus ``other`` (categorical), the counts in
those bins, a bounded sample of raw values (evenly spaced quantiles), the missing ratio,
min/max/mean/std. Predictions become the feature ``__prediction__``; targets are
kept apart for performance monitoring. For multivariate drift it also keeps a
seeded random sample of whole rows (``RowSample``, encoded by
``rows.RowLayout``) and, given ``embeddings=``, their random projections
(``EmbeddingSample``, the same projection as the SDK's ``modeltrace.embedding``).
The summary has a bounded size whatever the number of training rows, and is saved as versioned JSON
(docs/reference-format.md).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeltrace.drift.labelled_sample import (
    DEFAULT_LABELLED_SAMPLE_SIZE,
    LabelledSample,
    top_scores,
)
from modeltrace.embedding import DEFAULT_DIM, DEFAULT_SEED, Projection, as_matrix
from modeltrace.semconv import PREDICTION_FEATURE

from .rows import (
    DEFAULT_REFERENCE_ROWS,
    MAX_JOINT_COLUMNS,
    RowLayout,
    decode_float32,
    encode_float32,
)
from .sketches import (
    DEFAULT_EXEMPLARS_PER_BIN,
    Binning,
    FeatureKind,
    FeatureSketch,
    as_float,
    category_codes,
)

FORMAT = "modeltrace.reference"
FORMAT_VERSION = 1
# A column of integers with at most this many distinct values is categorical.
MAX_INTEGER_CATEGORIES = 10
# Categories remembered to tell unseen categories from rare ones.
MAX_KNOWN_CATEGORIES = 1000


class ReferenceFormatError(ValueError):
    """A reference file or dict that is not a valid ``modeltrace.reference`` v1."""


# --- input tables ----------------------------------------------------------


def _is_dataframe(data: object) -> bool:
    return hasattr(data, "columns") and hasattr(data, "iloc") and hasattr(data, "dtypes")


def _string_column(series: Any) -> np.ndarray:
    """A pandas string Series as an object column of ``str`` and ``None`` (the values
    of ``astype(object)`` with missing ones as ``None``), built from its distinct
    values: rows with the same value share one ``str`` object, so the category codes
    group them by address instead of hashing every row's fresh string, and no
    Python object is made per row."""
    codes, uniques = series.factorize()  # missing -> -1
    lookup = np.empty(len(uniques) + 1, dtype=object)
    lookup[:-1] = [str(u) for u in uniques]
    lookup[-1] = None
    return lookup[np.asarray(codes, dtype=np.intp)]


def _column_array(values: object) -> np.ndarray:
    """A 1-D numpy column from a pandas Series, an array or a sequence."""
    if hasattr(values, "to_numpy"):
        series: Any = values
        dtype = getattr(series, "dtype", None)
        if type(dtype).__name__ == "StringDtype" and hasattr(series, "factorize"):
            return _string_column(series)
        # pandas extension dtypes (nullable ints, categoricals, strings) -> object with None
        if dtype is not None and not isinstance(dtype, np.dtype):
            return np.asarray(series.astype(object).where(series.notna(), None).to_numpy())
        return np.asarray(series.to_numpy())
    array = np.asarray(values) if isinstance(values, np.ndarray) else None
    if array is None:
        items = list(values)  # type: ignore[call-overload]
        array = np.empty(len(items), dtype=object)
        array[:] = items
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            array = array.astype(np.float64)
    if array.ndim != 1:
        raise ValueError(f"a column must be 1-D, got shape {array.shape}")
    return array


def table_columns(
    data: object, feature_names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Columns of a 2-D numpy array, a DataFrame, a list of dicts or a dict of columns."""
    columns: dict[str, np.ndarray]
    if _is_dataframe(data):
        frame: Any = data
        frame_names = [str(c) for c in frame.columns]
        if len(set(frame_names)) != len(frame_names):
            raise ValueError("the DataFrame has duplicate column names")
        columns = {name: _column_array(frame.iloc[:, i]) for i, name in enumerate(frame_names)}
    elif isinstance(data, Mapping):
        columns = {str(k): _column_array(v) for k, v in data.items()}
    elif isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise ValueError(f"a numpy reference must be 2-D (rows x features), got {data.shape}")
        columns = {f"f{i}": data[:, i] for i in range(data.shape[1])}
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        rows = list(data)
        if rows and all(isinstance(r, Mapping) for r in rows):
            names: list[str] = []
            seen: set[str] = set()
            for row in rows:
                for key in row:
                    if str(key) not in seen:
                        seen.add(str(key))
                        names.append(str(key))
            columns = {}
            for name in names:
                columns[name] = _column_array([row.get(name) for row in rows])
        elif rows and all(isinstance(r, Sequence) and not isinstance(r, str) for r in rows):
            return table_columns(np.asarray(rows, dtype=object), feature_names)
        elif not rows:
            raise ValueError("the reference data has no rows")
        else:
            raise TypeError("a list reference must hold dicts (one per row) or rows (lists)")
    else:
        raise TypeError(
            "reference data must be a numpy 2-D array, a pandas DataFrame, a list of dicts "
            f"or a dict of columns, got {type(data).__name__}"
        )
    if feature_names is not None:
        feature_names = [str(n) for n in feature_names]
        if len(feature_names) != len(columns):
            raise ValueError(
                f"feature_names has {len(feature_names)} names for {len(columns)} columns"
            )
        if len(set(feature_names)) != len(feature_names):
            raise ValueError("feature_names must be distinct")
        columns = dict(zip(feature_names, columns.values(), strict=True))
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"reference columns differ in length: {sorted(lengths)}")
    if not columns or lengths == {0}:
        raise ValueError("the reference data has no rows or no columns")
    return columns


def _numeric_or_none(column: np.ndarray) -> np.ndarray | None:
    """The column as float64 if every non-missing value is a number, else None."""
    if column.dtype.kind in "fiu":
        return column.astype(np.float64)
    if column.dtype.kind != "O":
        return None
    for value in column.tolist():
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            return None
    return as_float(column)


def infer_kind(column: np.ndarray) -> FeatureKind:
    """Numeric unless the values are not numbers (text, booleans) or are integers
    taking at most ``MAX_INTEGER_CATEGORIES`` distinct values."""
    numbers = _numeric_or_none(column)
    if numbers is None:
        return "categorical"
    finite = numbers[np.isfinite(numbers)]
    integral = finite.size > 0 and bool(np.all(finite == np.round(finite)))
    if integral and np.unique(finite).size <= MAX_INTEGER_CATEGORIES:
        return "categorical"
    return "numeric"


# --- per-feature reference ---------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass
class FeatureReference:
    """One feature of a reference: its bins, counts, sample and summary statistics."""

    name: str
    kind: FeatureKind
    binning: Binning
    counts: np.ndarray
    n: int
    missing: int
    reservoir: np.ndarray
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    category_counts: dict[str, int] = field(default_factory=dict)
    reservoir_size: int = 1000

    @property
    def missing_ratio(self) -> float:
        return self.missing / self.n if self.n else 0.0

    @property
    def n_valid(self) -> int:
        return self.n - self.missing

    @property
    def categories(self) -> tuple[str, ...]:
        return self.binning.categories

    @property
    def edges(self) -> np.ndarray | None:
        return self.binning.edges

    def new_sketch(
        self,
        *,
        reservoir_size: int | None = None,
        exemplars_per_bin: int = DEFAULT_EXEMPLARS_PER_BIN,
        seed: int | None = 0,
    ) -> FeatureSketch:
        """An empty production sketch on this feature's bins."""
        return FeatureSketch(
            self.binning,
            reservoir_size=self.reservoir_size if reservoir_size is None else reservoir_size,
            exemplars_per_bin=exemplars_per_bin,
            seed=seed,
        )

    @classmethod
    def from_column(
        cls,
        name: str,
        column: np.ndarray,
        *,
        kind: FeatureKind | None = None,
        bins: int = 10,
        top_k: int = 20,
        reservoir_size: int = 1000,
        seed: int = 0,
    ) -> FeatureReference:
        column = _column_array(column)
        if kind is None:
            kind = infer_kind(column)
        summary: dict[str, Any] = {}
        codes: tuple[list[str], np.ndarray] | None = None
        ordered = np.empty(0, dtype=np.float64)
        if kind == "numeric":
            x = as_float(column)
            finite = x[np.isfinite(x)]
            ordered = np.sort(finite)  # once, for the edges and the quantile sample
            if finite.size == 0:
                edges = np.array([0.0])
            else:
                edges = np.unique(np.quantile(ordered, np.linspace(0.0, 1.0, bins + 1)))
                summary = {
                    "min": float(finite.min()),
                    "max": float(finite.max()),
                    "mean": float(finite.mean()),
                    "std": float(finite.std()),
                }
            binning = Binning("numeric", edges=edges)
            category_counts: dict[str, int] = {}
        else:
            codes = category_codes(column)
            keys, row_codes = codes
            freq = np.bincount(row_codes[row_codes >= 0], minlength=len(keys)).tolist()
            # most frequent first, ties by name
            ranked = sorted(
                ((k, f) for k, f in zip(keys, freq, strict=True) if f),
                key=lambda kf: (-kf[1], kf[0]),
            )
            known = frozenset(u for u, _ in ranked) if len(ranked) <= MAX_KNOWN_CATEGORIES else None
            top = ranked[:top_k]
            binning = Binning("categorical", categories=tuple(u for u, _ in top), known=known)
            category_counts = dict(top)
        sketch = FeatureSketch(binning, reservoir_size=0, exemplars_per_bin=0, seed=seed)
        sketch.update_checked(column, np.ones(column.shape[0]), codes=codes)
        return cls(
            name=name,
            kind=kind,
            binning=binning,
            counts=sketch.counts,
            n=sketch.n,
            missing=sketch.missing_raw,
            reservoir=_sorted_quantile_sample(ordered, reservoir_size)
            if kind == "numeric"
            else np.empty(0),
            category_counts=category_counts,
            reservoir_size=reservoir_size,
            **summary,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "missing": self.missing,
            "counts": [float(c) for c in self.counts],
            "reservoir_size": self.reservoir_size,
        }
        if self.kind == "numeric":
            assert self.binning.edges is not None
            data["edges"] = [float(e) for e in self.binning.edges]
            data.update(
                min=_opt(self.min), max=_opt(self.max), mean=_opt(self.mean), std=_opt(self.std)
            )
            data["reservoir"] = [float(v) for v in self.reservoir]
        else:
            data["categories"] = list(self.binning.categories)
            data["category_counts"] = [self.category_counts.get(c, 0) for c in self.categories]
            known = self.binning.known
            data["known_categories"] = sorted(known) if known is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureReference:
        where = f"feature {data.get('name')!r}" if isinstance(data, Mapping) else "feature"
        if not isinstance(data, Mapping):
            raise ReferenceFormatError(f"{where}: expected an object, got {type(data).__name__}")
        try:
            kind = data["kind"]
            if kind == "numeric":
                binning = Binning("numeric", edges=np.asarray(data["edges"], dtype=np.float64))
                reservoir = np.asarray(data["reservoir"], dtype=np.float64)
                category_counts: dict[str, int] = {}
            elif kind == "categorical":
                known = data["known_categories"]
                categories = tuple(str(c) for c in data["categories"])
                binning = Binning(
                    "categorical",
                    categories=categories,
                    known=frozenset(str(k) for k in known) if known is not None else None,
                )
                reservoir = np.empty(0, dtype=np.float64)
                counts_list = [int(c) for c in data["category_counts"]]
                if len(counts_list) != len(categories):
                    raise ReferenceFormatError(
                        f"{where}: category_counts has {len(counts_list)} entries "
                        f"for {len(categories)} categories"
                    )
                category_counts = dict(zip(categories, counts_list, strict=True))
            else:
                raise ReferenceFormatError(
                    f"{where}: kind must be 'numeric' or 'categorical', got {kind!r}"
                )
            counts = np.asarray(data["counts"], dtype=np.float64)
            if counts.shape != (binning.n_bins,):
                raise ReferenceFormatError(
                    f"{where}: {counts.size} counts for {binning.n_bins} bins"
                )
            n, missing = int(data["n"]), int(data["missing"])
            if not 0 <= missing <= n:
                raise ReferenceFormatError(f"{where}: missing ({missing}) must be in 0..n ({n})")
            return cls(
                name=str(data["name"]),
                kind=kind,
                binning=binning,
                counts=counts,
                n=n,
                missing=missing,
                reservoir=reservoir,
                min=_float_or_none(data.get("min")),
                max=_float_or_none(data.get("max")),
                mean=_float_or_none(data.get("mean")),
                std=_float_or_none(data.get("std")),
                category_counts=category_counts,
                reservoir_size=int(data.get("reservoir_size", 1000)),
            )
        except ReferenceFormatError:
            raise
        except KeyError as exc:
            raise ReferenceFormatError(f"{where}: missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ReferenceFormatError(f"{where}: {exc}") from exc


def _quantile_sample(column: np.ndarray, size: int) -> np.ndarray:
    """Up to ``size`` reference values evenly spread over the reference's quantiles.

    A systematic sample of the sorted finite values: its empirical CDF is within
    ``1 / size`` of the reference's, where a random sample of the same size would
    err by about ``1 / sqrt(size)``. That error would be frozen into every
    comparison with this reference (a persistent false-positive rate), so the
    reference keeps quantiles rather than a random reservoir. Every value is an
    actual observation (inverted-CDF quantiles).
    """
    x = as_float(column)
    return _sorted_quantile_sample(np.sort(x[np.isfinite(x)]), size)


def _sorted_quantile_sample(finite: np.ndarray, size: int) -> np.ndarray:
    """``_quantile_sample`` of values already finite and sorted: the elements
    ``np.quantile(finite, levels, method="inverted_cdf")`` picks, read by index
    (numpy's rule: ``n * q - 1`` rounded up unless integral, at least 0) instead of
    partitioning the array around every one of the ``size`` levels."""
    if finite.size <= size:
        return finite
    if size == 0:
        return np.empty(0, dtype=np.float64)
    levels = (np.arange(size) + 0.5) / size
    virtual = finite.size * levels - 1
    below = np.floor(virtual)
    index = np.where(virtual - below == 0, below, below + 1).astype(np.intp)
    index[index < 0] = 0
    return finite[index]


def _opt(value: float | None) -> float | None:
    return None if value is None else _finite_or_none(value)


def _float_or_none(value: object) -> float | None:
    if value is None:
        return None
    return float(value)  # type: ignore[arg-type]


# --- whole-row samples (multivariate drift) -----------------------------------


@dataclass(eq=False)
class RowSample:
    """A seeded random sample of whole reference rows, encoded by ``RowLayout``."""

    columns: tuple[str, ...]
    rows: np.ndarray  # (m, len(columns)): numbers, categorical codes, NaN missing
    n: int  # reference rows it was drawn from

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "n": self.n,
            "size": int(self.rows.shape[0]),
            "values": encode_float32(self.rows),
        }

    @classmethod
    def from_dict(cls, data: object, features: Mapping[str, FeatureReference]) -> RowSample:
        if not isinstance(data, Mapping):
            raise ReferenceFormatError("reference 'rows' must be an object")
        try:
            columns = tuple(str(c) for c in data["columns"])
            unknown = [c for c in columns if c not in features]
            if unknown or not columns:
                raise ReferenceFormatError(f"reference 'rows' names unknown columns {unknown}")
            size = int(data["size"])
            flat = decode_float32(data["values"])
            if size < 0 or flat.size != size * len(columns):
                raise ReferenceFormatError(
                    f"reference 'rows' holds {flat.size} values, not {size} x {len(columns)}"
                )
            return cls(columns=columns, rows=flat.reshape(size, len(columns)), n=int(data["n"]))
        except ReferenceFormatError:
            raise
        except KeyError as exc:
            raise ReferenceFormatError(f"reference 'rows': missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ReferenceFormatError(f"reference 'rows': {exc}") from exc


@dataclass(eq=False)
class EmbeddingSample:
    """Projected reference embeddings (``projection`` spec) and the original norms."""

    projection: str
    rows: np.ndarray  # (m, k)
    norms: np.ndarray  # (m,)
    n: int

    @property
    def dim(self) -> int:
        return int(self.rows.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "n": self.n,
            "size": int(self.rows.shape[0]),
            "values": encode_float32(self.rows),
            "norms": encode_float32(self.norms),
        }

    @classmethod
    def from_dict(cls, data: object) -> EmbeddingSample:
        if not isinstance(data, Mapping):
            raise ReferenceFormatError("reference 'embedding' must be an object")
        try:
            projection = Projection.parse(str(data["projection"]))
            size = int(data["size"])
            flat = decode_float32(data["values"])
            norms = decode_float32(data["norms"])
            if size < 0 or flat.size != size * projection.k or norms.size != size:
                raise ReferenceFormatError(
                    f"reference 'embedding' arrays do not hold {size} rows of {projection.k}"
                )
            return cls(
                projection=projection.spec,
                rows=flat.reshape(size, projection.k),
                norms=norms,
                n=int(data["n"]),
            )
        except ReferenceFormatError:
            raise
        except KeyError as exc:
            raise ReferenceFormatError(
                f"reference 'embedding': missing field {exc.args[0]!r}"
            ) from exc
        except (TypeError, ValueError) as exc:
            raise ReferenceFormatError(f"reference 'embedding': {exc}") from exc


def _as_stored(values: np.ndarray) -> np.ndarray:
    """``values`` at the precision they are saved with (float32): a reference then
    gives the same results before and after a save/load round trip."""
    return values.astype(np.float32).astype(np.float64)


def _embedding_matrix(
    columns: dict[str, np.ndarray], embeddings: object, n_rows: int
) -> np.ndarray:
    """``embeddings=``: an ``(n, d)`` array, or the name of a column of per-row vectors."""
    if isinstance(embeddings, str):
        if embeddings not in columns:
            raise ValueError(f"embeddings column {embeddings!r} is not in the data")
        column = columns.pop(embeddings)
        vectors = as_matrix(np.stack([np.asarray(v, dtype=np.float64) for v in column.tolist()]))
    else:
        vectors = as_matrix(embeddings)
    if vectors.shape[0] != n_rows:
        raise ValueError(f"embeddings has {vectors.shape[0]} rows for {n_rows} rows")
    return vectors


# --- the reference ---------------------------------------------------------


def _pop_named(columns: dict[str, np.ndarray], values: object, what: str) -> np.ndarray | None:
    """``predictions=``/``targets=``: a column name of the data or an array of values."""
    if values is None:
        return None
    if isinstance(values, str):
        if values not in columns:
            raise ValueError(f"{what} column {values!r} is not in the data")
        return columns.pop(values)
    array = _column_array(values)
    return array


@dataclass
class Reference:
    """Per-feature reference summaries (see module doc). Build with ``from_data``."""

    features: dict[str, FeatureReference]
    target: FeatureReference | None = None
    n_rows: int = 0
    created_at: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    rows: RowSample | None = None
    embedding: EmbeddingSample | None = None
    # Aligned (prediction, score, target) rows for the CBPE calibration.
    labelled: LabelledSample | None = None

    def row_layout(self) -> RowLayout | None:
        """The layout of the joint rows (None without a row sample)."""
        if self.rows is None:
            return None
        return RowLayout(
            self.rows.columns, tuple(self.features[c].binning for c in self.rows.columns)
        )

    @property
    def feature_names(self) -> list[str]:
        """Input feature names (``__prediction__`` excluded)."""
        return [n for n in self.features if n != PREDICTION_FEATURE]

    @property
    def prediction(self) -> FeatureReference | None:
        return self.features.get(PREDICTION_FEATURE)

    def __getitem__(self, name: str) -> FeatureReference:
        return self.features[name]

    def __contains__(self, name: object) -> bool:
        return name in self.features

    @classmethod
    def from_data(
        cls,
        X: object,
        feature_names: Sequence[str] | None = None,
        predictions: object = None,
        categorical: Iterable[str] | Mapping[str, bool] | None = None,
        targets: object = None,
        bins: int = 10,
        top_k: int = 20,
        reservoir_size: int = 1000,
        seed: int = 0,
        *,
        embeddings: object = None,
        embedding_dim: int = DEFAULT_DIM,
        embedding_seed: int = DEFAULT_SEED,
        row_sample_size: int = DEFAULT_REFERENCE_ROWS,
        scores: object = None,
        labelled_sample_size: int = DEFAULT_LABELLED_SAMPLE_SIZE,
    ) -> Reference:
        """Summarise reference data.

        ``X``: a 2-D numpy array, a pandas DataFrame, a list of dicts or a dict of
        columns. ``predictions`` / ``targets``: arrays aligned with the rows, or the
        name of a column of ``X`` (removed from the features). ``categorical``: names
        forced categorical, or a mapping name -> True (categorical) / False (numeric).
        ``embeddings``: an ``(n, d)`` array aligned with the rows, or the name of a
        column of ``X`` holding one vector per row; projected like the SDK does
        (``embedding_dim``, ``embedding_seed``: use the values given to ``monitor``).
        ``row_sample_size``: whole rows kept for multivariate drift (0: none).
        ``scores``: the model's confidence per row (the predicted class's probability,
        or a ``predict_proba`` matrix); with ``predictions`` and ``targets`` a sample
        of ``labelled_sample_size`` aligned rows is kept to calibrate estimated
        performance (``modeltrace.drift.cbpe``).
        """
        if (
            isinstance(row_sample_size, bool)
            or not isinstance(row_sample_size, int)
            or row_sample_size < 0
        ):
            raise ValueError(f"row_sample_size must be an integer >= 0, got {row_sample_size!r}")
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if not isinstance(reservoir_size, int) or reservoir_size < 0:
            raise ValueError(f"reservoir_size must be an integer >= 0, got {reservoir_size!r}")
        columns = table_columns(X, feature_names)
        prediction_column = _pop_named(columns, predictions, "predictions")
        target_column = _pop_named(columns, targets, "targets")
        n_all = len(next(iter(columns.values()))) if columns else 0
        vectors = _embedding_matrix(columns, embeddings, n_all) if embeddings is not None else None
        if not columns:
            raise ValueError("the reference data has no feature columns")
        n_rows = len(next(iter(columns.values())))
        if PREDICTION_FEATURE in columns:
            raise ValueError(f"{PREDICTION_FEATURE!r} is reserved for predictions")
        overrides: dict[str, bool]
        if categorical is None:
            overrides = {}
        elif isinstance(categorical, Mapping):
            overrides = {str(k): bool(v) for k, v in categorical.items()}
        elif isinstance(categorical, str):
            overrides = {categorical: True}
        else:
            overrides = {str(k): True for k in categorical}
        known_names = set(columns) | {PREDICTION_FEATURE}
        unknown = sorted(set(overrides) - known_names)
        if unknown:
            raise ValueError(f"categorical names features that are not in the data: {unknown}")
        for what, column in (("predictions", prediction_column), ("targets", target_column)):
            if column is not None and len(column) != n_rows:
                raise ValueError(f"{what} has {len(column)} values for {n_rows} rows")
        options = {"bins": bins, "top_k": top_k, "reservoir_size": reservoir_size, "seed": seed}

        def kind_of(name: str) -> FeatureKind | None:
            if name not in overrides:
                return None
            return "categorical" if overrides[name] else "numeric"

        def summarise(name: str, column: np.ndarray, kind: FeatureKind | None) -> FeatureReference:
            return FeatureReference.from_column(
                name,
                column,
                kind=kind,
                bins=bins,
                top_k=top_k,
                reservoir_size=reservoir_size,
                seed=seed,
            )

        features = {
            name: summarise(name, column, kind_of(name)) for name, column in columns.items()
        }
        if prediction_column is not None:
            features[PREDICTION_FEATURE] = summarise(
                PREDICTION_FEATURE, prediction_column, kind_of(PREDICTION_FEATURE)
            )
        target = summarise("__target__", target_column, None) if target_column is not None else None
        options["row_sample_size"] = row_sample_size
        reference = cls(
            features=features,
            target=target,
            n_rows=n_rows,
            created_at=time.time(),
            settings=dict(options),
        )
        chosen = np.sort(
            np.random.default_rng(seed).permutation(n_rows)[: min(row_sample_size, n_rows)]
        )
        joint = [n for n in columns][:MAX_JOINT_COLUMNS]
        if len(joint) >= 2 and chosen.size:
            reference.rows = RowSample(columns=tuple(joint), rows=np.empty((0, 0)), n=n_rows)
            layout = reference.row_layout()
            assert layout is not None
            picked = {name: columns[name][chosen] for name in joint}
            reference.rows.rows = _as_stored(layout.encode(picked, int(chosen.size)))
        if scores is not None:
            if prediction_column is None or target_column is None:
                raise ValueError("scores need predictions and targets (to calibrate them)")
            reference.labelled = LabelledSample.from_columns(
                prediction_column,
                top_scores(scores, n_rows),
                target_column,
                size=labelled_sample_size,
                seed=seed,
            )
        if vectors is not None and chosen.size:
            projection = Projection(seed=embedding_seed, k=embedding_dim, d=int(vectors.shape[1]))
            projected, norms = projection.project(vectors[chosen])
            reference.embedding = EmbeddingSample(
                projection.spec, _as_stored(projected), _as_stored(norms), n=n_rows
            )
        return reference

    # -- serialisation --

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at,
            "n_rows": self.n_rows,
            "settings": dict(self.settings),
            "features": [f.to_dict() for f in self.features.values()],
            "target": self.target.to_dict() if self.target is not None else None,
            "rows": self.rows.to_dict() if self.rows is not None else None,
            "embedding": self.embedding.to_dict() if self.embedding is not None else None,
            **({"labelled": self.labelled.to_dict()} if self.labelled is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: object) -> Reference:
        if not isinstance(data, Mapping):
            raise ReferenceFormatError(
                f"a reference must be a JSON object, got {type(data).__name__}"
            )
        fmt = data.get("format")
        if fmt != FORMAT:
            raise ReferenceFormatError(
                f"not a modeltrace reference: format is {fmt!r}, expected {FORMAT!r}"
            )
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ReferenceFormatError(
                f"unsupported reference format_version {version!r}: this modeltrace reads "
                f"version {FORMAT_VERSION}"
            )
        raw_features = data.get("features")
        if not isinstance(raw_features, list) or not raw_features:
            raise ReferenceFormatError("reference 'features' must be a non-empty list")
        features: dict[str, FeatureReference] = {}
        for item in raw_features:
            feature = FeatureReference.from_dict(item)
            if feature.name in features:
                raise ReferenceFormatError(f"feature {feature.name!r} appears twice")
            features[feature.name] = feature
        target_data = data.get("target")
        try:
            n_rows = int(data.get("n_rows", 0))
            created_at = float(data.get("created_at", 0.0))
        except (TypeError, ValueError) as exc:
            raise ReferenceFormatError(f"reference header: {exc}") from exc
        settings = data.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise ReferenceFormatError("reference 'settings' must be an object")
        rows_data, embedding_data = data.get("rows"), data.get("embedding")
        labelled_data = data.get("labelled")
        try:
            labelled = (
                LabelledSample.from_dict(labelled_data) if labelled_data is not None else None
            )
        except ValueError as exc:
            raise ReferenceFormatError(f"reference 'labelled': {exc}") from exc
        return cls(
            features=features,
            target=FeatureReference.from_dict(target_data) if target_data is not None else None,
            n_rows=n_rows,
            created_at=created_at,
            settings=dict(settings),
            rows=RowSample.from_dict(rows_data, features) if rows_data is not None else None,
            embedding=(
                EmbeddingSample.from_dict(embedding_data) if embedding_data is not None else None
            ),
            labelled=labelled,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Reference:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReferenceFormatError(f"reference is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the reference as JSON (atomically: a temporary file, then a rename)."""
        target = os.fspath(path)
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(self.to_json())
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reference:
        """Read a reference written by ``save``; ``ReferenceFormatError`` if it is not one."""
        with open(path, "rb") as fh:
            text = fh.read()
        try:
            return cls.from_json(text)
        except ReferenceFormatError as exc:
            raise ReferenceFormatError(f"{os.fspath(path)}: {exc}") from exc
