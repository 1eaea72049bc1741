"""Embedding capture: a fixed, seeded random projection that keeps spans small.

A model's embedding (a text encoder's output, a penultimate layer) has hundreds
of dimensions; a span records, per captured row, its projection on ``k``
dimensions (default 32) by a Gaussian random matrix ``R`` (``d x k``, entries
``N(0, 1) / sqrt(k)``, Johnson-Lindenstrauss: distances are kept up to a small
distortion), plus the norm of the original vector. The matrix is a pure
function of ``(seed, d, k)``, written on the span as the projection spec
``gaussian:seed=S:k=K:d=D`` (``ml.embedding.projection``), so the reference side
(``Reference.from_data(..., embeddings=...)``) projects the training embeddings
with exactly the same matrix.

``EmbeddingCapture`` is what ``monitor(..., embedding=...)`` holds: where the
embedding comes from (a callable taking the model input, or the name of an
input or output field) and the projection.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeltrace import semconv

DEFAULT_DIM = 32
DEFAULT_SEED = 0
# Largest accepted input dimension and projected dimension (bounds span size and memory).
MAX_INPUT_DIM = 65_536
MAX_DIM = 256
_SPEC = re.compile(r"^gaussian:seed=(\d+):k=(\d+):d=(\d+)$")
_CACHE_LIMIT = 16
_matrices: dict[tuple[int, int, int], np.ndarray] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Projection:
    """The Gaussian random projection ``d -> k`` drawn from ``seed``."""

    seed: int
    k: int
    d: int

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("seed", self.seed, 0, 2**63 - 1),
            ("k", self.k, 1, MAX_DIM),
            ("d", self.d, 1, MAX_INPUT_DIM),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"projection {name} must be an integer in [{low}, {high}]")

    @property
    def spec(self) -> str:
        """The text form recorded as ``ml.embedding.projection``."""
        return f"gaussian:seed={self.seed}:k={self.k}:d={self.d}"

    @classmethod
    def parse(cls, spec: str) -> Projection:
        """Inverse of ``spec``; ``ValueError`` for anything else."""
        match = _SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise ValueError(
                f"not an embedding projection spec (gaussian:seed=S:k=K:d=D): {spec!r}"
            )
        seed, k, d = (int(g) for g in match.groups())
        return cls(seed=seed, k=k, d=d)

    def matrix(self) -> np.ndarray:
        """The ``d x k`` matrix (cached, read-only)."""
        key = (self.seed, self.k, self.d)
        with _lock:
            cached = _matrices.get(key)
        if cached is not None:
            return cached
        rng = np.random.default_rng(self.seed)
        matrix = rng.standard_normal((self.d, self.k)) / math.sqrt(self.k)
        matrix.setflags(write=False)
        with _lock:
            if len(_matrices) >= _CACHE_LIMIT:
                _matrices.pop(next(iter(_matrices)))
            _matrices[key] = matrix
        return matrix

    def project(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(projected (n, k), norms (n,))`` of an ``(n, d)`` array of embeddings.

        Rows with a non-finite value project to NaN (a missing embedding)."""
        x = as_matrix(vectors)
        if x.shape[1] != self.d:
            raise ValueError(
                f"embeddings have {x.shape[1]} dimensions, the projection expects {self.d}"
            )
        finite = np.all(np.isfinite(x), axis=1)
        safe = np.where(finite[:, None], x, 0.0)
        projected = safe @ self.matrix()
        norms = np.linalg.norm(safe, axis=1)
        projected[~finite] = np.nan
        norms[~finite] = np.nan
        return projected, norms


def as_matrix(vectors: object) -> np.ndarray:
    """An ``(n, d)`` float64 array of embeddings (a single 1-D vector is one row)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"embeddings must be an (n, d) array, got shape {x.shape}")
    if x.shape[1] > MAX_INPUT_DIM:
        raise ValueError(f"embeddings have {x.shape[1]} dimensions, at most {MAX_INPUT_DIM}")
    return x


def projection_for(d: int, k: int = DEFAULT_DIM, seed: int = DEFAULT_SEED) -> Projection:
    return Projection(seed=seed, k=k, d=d)


# --- capture in the SDK --------------------------------------------------------


def _field(container: Any, name: str) -> Any:
    """``container[name]`` for mappings and DataFrames, else the attribute; None if absent."""
    if isinstance(container, Mapping):
        return container.get(name)
    columns = getattr(container, "columns", None)
    if columns is not None and hasattr(container, "iloc"):
        if name in list(columns):
            column = container[name]
            return np.stack([np.asarray(v, dtype=np.float64) for v in column.tolist()])
        return None
    if isinstance(container, Sequence) and container and isinstance(container[0], Mapping):
        values = [row.get(name) for row in container]
        if any(v is None for v in values):
            return None
        return np.stack([np.asarray(v, dtype=np.float64) for v in values])
    return getattr(container, name, None)


class EmbeddingCapture:
    """Where a monitored call's embedding comes from, and its projection.

    ``source``: a callable ``f(model_input) -> (n, d) array``, or the name of a
    field of the input (dict key, DataFrame column, list-of-dicts key, attribute)
    or, when the input has no such field, of the output. ``dim`` (k) and ``seed``
    fix the projection; ``d`` is taken from the first embedding seen per call.
    """

    def __init__(
        self,
        source: Callable[[Any], Any] | str,
        *,
        dim: int = DEFAULT_DIM,
        seed: int = DEFAULT_SEED,
    ) -> None:
        if not (callable(source) or (isinstance(source, str) and source)):
            raise TypeError(
                "embedding must be a callable (input -> (n, d) array) or a field name, "
                f"got {source!r}"
            )
        Projection(seed=seed, k=dim, d=1)  # validates seed and dim now
        self.source = source
        self.dim = dim
        self.seed = seed

    def __repr__(self) -> str:
        return f"EmbeddingCapture({self.source!r}, dim={self.dim}, seed={self.seed})"

    def vectors(self, model_input: Any, output: Any) -> np.ndarray | None:
        """The call's ``(n, d)`` embeddings, or None when the source has none."""
        if callable(self.source):
            found = self.source(model_input)
        else:
            found = _field(model_input, self.source)
            if found is None:
                found = _field(output, self.source)
        return None if found is None else as_matrix(found)

    def attributes(
        self, model_input: Any, output: Any, rows: Sequence[int], n_rows: int
    ) -> dict[str, Any]:
        """Span attributes for the captured ``rows`` of a call of ``n_rows`` rows.

        Empty when the source yields nothing or a number of rows that does not
        match the call (never guessed)."""
        vectors = self.vectors(model_input, output)
        if vectors is None or vectors.shape[0] != n_rows or not rows:
            return {}
        projection = Projection(seed=self.seed, k=self.dim, d=int(vectors.shape[1]))
        projected, norms = projection.project(vectors[np.asarray(rows, dtype=np.intp)])
        return {
            semconv.EMBEDDING_PROJECTION: projection.spec,
            semconv.EMBEDDING_VECTOR: projected.ravel().tolist(),
            semconv.EMBEDDING_NORM: norms.tolist(),
        }


def as_capture(
    value: EmbeddingCapture | Callable[[Any], Any] | str | None,
) -> EmbeddingCapture | None:
    """``monitor(embedding=...)``: None, an ``EmbeddingCapture``, a callable or a field name."""
    if value is None or isinstance(value, EmbeddingCapture):
        return value
    return EmbeddingCapture(value)
