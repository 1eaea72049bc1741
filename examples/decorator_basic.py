"""The smallest modeltrace program: one decorated predict function.

Run it against a local OTLP endpoint (a Collector, Jaeger, or ``modeltrace serve``)::

    OTEL_SERVICE_NAME=churn-batch \
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
    MODELTRACE_SAMPLE_RATE=1 \
    python examples/decorator_basic.py

What to look for: 20 spans ``predict churn`` (kind INTERNAL) with
``ml.model.name=churn``, ``ml.model.version=3``, ``ml.batch.size``, the captured
``ml.feature.tenure_months`` / ``ml.feature.monthly_charges`` and
``ml.prediction.value``; and the metrics ``ml.model.predict.duration``,
``ml.model.predictions`` and ``ml.model.batch.size``. All settings come from the
``OTEL_*`` / ``MODELTRACE_*`` variables.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

import modeltrace

FEATURES = ["tenure_months", "monthly_charges"]


def train() -> LogisticRegression:
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.uniform(0, 72, 500), rng.uniform(20, 120, 500)])
    y = (x[:, 1] / 120 - x[:, 0] / 72 + rng.normal(0, 0.2, 500) > 0).astype(int)
    return LogisticRegression().fit(x, y)


MODEL = train()


@modeltrace.monitor(model="churn", version="3", feature_names=FEATURES)
def predict(rows: np.ndarray) -> np.ndarray:
    """Churn class (1 = churns) for each row of [tenure_months, monthly_charges]."""
    return MODEL.predict(rows)


def main() -> None:
    handle = modeltrace.configure()
    rng = np.random.default_rng(11)
    churners = 0
    for _ in range(20):
        batch = np.column_stack([rng.uniform(0, 72, 4), rng.uniform(20, 120, 4)])
        churners += int(predict(batch).sum())
    print(f"predicted 80 rows, {churners} churners")
    handle.shutdown()


if __name__ == "__main__":
    main()
