"""A plain scikit-learn batch scorer: no modeltrace import, no OpenTelemetry code.

Run it with zero-code instrumentation (see README.md next to this file)::

    OTEL_SERVICE_NAME=churn-batch \
    OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp OTEL_LOGS_EXPORTER=none \
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
    MODELTRACE_SKLEARN_MODEL_VERSION=2024-06 MODELTRACE_SAMPLE_RATE=1 \
    opentelemetry-instrument python examples/zero_code/app.py

What to look for: three ``predict churn-pipeline`` spans (one per batch, not one
per pipeline step) with ``ml.model.framework=sklearn``,
``ml.model.version=2024-06``, ``ml.model.operation`` ``predict`` then
``predict_proba``; one ``predict IsolationForest`` span (``score_samples``,
named after the class); no span for ``fit`` or for the scaler inside the
pipeline.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.uniform(0, 72, 300), rng.uniform(20, 120, 300)])
    y = (x[:, 1] / 120 - x[:, 0] / 72 > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    pipeline.modeltrace_name = "churn-pipeline"  # optional: the default is the final step's class
    outliers = IsolationForest(n_estimators=20, random_state=0).fit(x)

    for size in (1, 5):
        batch = np.column_stack([rng.uniform(0, 72, size), rng.uniform(20, 120, size)])
        print("churn", pipeline.predict(batch).tolist())
    print("p(churn)", pipeline.predict_proba(x[:3])[:, 1].round(3).tolist())
    print("outlier scores", outliers.score_samples(x[:2]).round(3).tolist())


if __name__ == "__main__":
    main()
