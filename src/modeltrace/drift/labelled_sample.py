"""A bounded sample of a reference's labelled predictions, for calibrating CBPE.

``Reference.from_data(..., predictions=, scores=, targets=)`` keeps, besides the
per-feature summaries, a seeded random sample of aligned (prediction, score,
target) rows: enough to fit the score calibration that confidence-based
performance estimation (``modeltrace.drift.cbpe``) needs, and small whatever the
size of the training set. Scores are the predicted class's confidence, as
``ml.prediction.score`` carries it: a 2-D ``predict_proba`` matrix is reduced
to its row maxima.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeltrace.drift.cbpe import Calibration, fit_calibration
from modeltrace.drift.labels import LabelValue, normalize_label

__all__ = ["DEFAULT_LABELLED_SAMPLE_SIZE", "LabelledSample"]

DEFAULT_LABELLED_SAMPLE_SIZE = 5000
# Fewer labelled rows than this give no calibration (isotonic maps overfit).
MIN_CALIBRATION_ROWS = 50


def _values(column: Any, name: str) -> list[LabelValue | None]:
    array = np.asarray(column, dtype=object).reshape(-1)
    try:
        return [normalize_label(v.item() if isinstance(v, np.generic) else v) for v in array]
    except TypeError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def top_scores(scores: Any, n_rows: int) -> np.ndarray:
    """Scores as the predicted class's confidence: 1-D as given, 2-D reduced to row maxima."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 2:
        array = array.max(axis=1)
    if array.ndim != 1 or array.shape[0] != n_rows:
        raise ValueError(f"scores must hold one value (or one row) per row: {n_rows} expected")
    finite = array[np.isfinite(array)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValueError("scores must be probabilities in [0, 1]")
    return array


@dataclass(eq=False)
class LabelledSample:
    """Aligned predictions, top-class scores and true labels of reference rows."""

    predictions: list[LabelValue]
    scores: list[float]
    targets: list[LabelValue]
    n: int  # reference rows the sample was drawn from

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def from_columns(
        cls,
        predictions: Any,
        scores: Any,
        targets: Any,
        *,
        size: int = DEFAULT_LABELLED_SAMPLE_SIZE,
        seed: int = 0,
    ) -> LabelledSample | None:
        """Sample ``size`` complete rows (None when no row has all three values)."""
        preds = _values(predictions, "predictions")
        n = len(preds)
        top = top_scores(scores, n)
        targs = _values(targets, "targets")
        if len(targs) != n:
            raise ValueError(f"targets has {len(targs)} values for {n} predictions")
        complete = [
            i
            for i in range(n)
            if preds[i] is not None and targs[i] is not None and math.isfinite(top[i])
        ]
        if not complete or size <= 0:
            return None
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.permutation(len(complete))[: min(size, len(complete))].tolist())
        rows = [complete[i] for i in chosen]
        return cls(
            predictions=[preds[i] for i in rows],  # type: ignore[misc]
            scores=[float(top[i]) for i in rows],
            targets=[targs[i] for i in rows],  # type: ignore[misc]
            n=n,
        )

    def calibration(self) -> Calibration | None:
        """The isotonic calibration of the top-class scores (None with too few rows)."""
        if len(self) < MIN_CALIBRATION_ROWS:
            return None
        labels = np.empty(len(self), dtype=object)
        labels[:] = self.targets
        predictions = np.empty(len(self), dtype=object)
        predictions[:] = self.predictions
        classes = sorted(set(self.targets) | set(self.predictions), key=lambda v: (str(type(v)), v))
        return fit_calibration(
            np.asarray(self.scores),
            labels,
            predictions=predictions,
            score_kind="top",
            classes=classes,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "predictions": list(self.predictions),
            "scores": list(self.scores),
            "targets": list(self.targets),
        }

    @classmethod
    def from_dict(cls, data: object) -> LabelledSample:
        if not isinstance(data, Mapping):
            raise ValueError("the labelled sample must be an object")
        try:
            predictions = _values(data["predictions"], "predictions")
            targets = _values(data["targets"], "targets")
            scores = [float(s) for s in data["scores"]]
            n = int(data["n"])
        except KeyError as exc:
            raise ValueError(f"the labelled sample misses {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the labelled sample is invalid: {exc}") from exc
        if not (len(predictions) == len(targets) == len(scores)):
            raise ValueError("the labelled sample's arrays differ in length")
        if any(v is None for v in predictions) or any(v is None for v in targets):
            raise ValueError("the labelled sample holds missing values")
        if any(not 0.0 <= s <= 1.0 for s in scores):
            raise ValueError("the labelled sample's scores must be in [0, 1]")
        return cls(predictions, scores, targets, n)  # type: ignore[arg-type]
