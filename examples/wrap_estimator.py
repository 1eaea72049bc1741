"""``modeltrace.wrap``: monitor an existing estimator without touching its code.

Run it against a local OTLP endpoint::

    OTEL_SERVICE_NAME=churn-batch \
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
    MODELTRACE_SAMPLE_RATE=1 \
    python examples/wrap_estimator.py

What to look for: spans ``predict churn`` with ``ml.model.operation=predict``
and ``predict_proba`` (the latter with ``ml.prediction.score``, the top class
probability), feature names taken from the DataFrame columns, and a
``label churn`` span joining a delayed label to the first prediction through
``ml.prediction.id``. The wrapped object is still the estimator: ``isinstance``
and attributes such as ``classes_`` pass through.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

import modeltrace


def train() -> RandomForestClassifier:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"tenure_months": rng.uniform(0, 72, 400), "monthly_charges": rng.uniform(20, 120, 400)}
    )
    y = (frame["monthly_charges"] / 120 - frame["tenure_months"] / 72 > 0).astype(int)
    return RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, y)


def main() -> None:
    handle = modeltrace.configure()
    model = modeltrace.wrap(train(), model="churn", version="4")
    assert isinstance(model, RandomForestClassifier)
    batch = pd.DataFrame({"tenure_months": [2.0, 60.0], "monthly_charges": [110.0, 25.0]})

    classes = model.predict(batch)
    prediction_ids: list[str] = []

    @modeltrace.monitor(model="churn", version="4")
    def scored(rows: pd.DataFrame) -> np.ndarray:
        prediction_id = modeltrace.current_prediction_id()
        if prediction_id is not None:
            prediction_ids.append(prediction_id)
        return model.predict_proba(rows)

    probabilities = scored(batch)
    print("classes", classes.tolist(), "p(churn)", probabilities[:, 1].round(3).tolist())
    # Later, when the truth is known, join it to the prediction.
    if prediction_ids:
        modeltrace.record_label(prediction_ids[0], [1, 0], model="churn", version="4")
    handle.shutdown()


if __name__ == "__main__":
    main()
