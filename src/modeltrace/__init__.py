"""modeltrace: OpenTelemetry instrumentation for ML model serving.

The public API (see README and ``SPEC.md``)::

    import modeltrace

    handle = modeltrace.configure(service_name="churn-api")

    @modeltrace.monitor(model="churn", version="3")
    def predict(x): ...

    model = modeltrace.wrap(estimator, model="churn", version="3")
    modeltrace.record_label(prediction_id, label, model="churn", version="3")
"""

from __future__ import annotations

__version__ = "0.1.0"

from modeltrace.decorator import current_prediction_id, monitor, wrap
from modeltrace.labels import record_label
from modeltrace.setup import ModeltraceHandle, configure

__all__ = [
    "ModeltraceHandle",
    "__version__",
    "configure",
    "current_prediction_id",
    "monitor",
    "record_label",
    "wrap",
]
