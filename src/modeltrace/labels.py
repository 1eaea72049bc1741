"""``record_label``: delayed ground truth as a ``label {model}`` span, joined by prediction id."""

from __future__ import annotations

from typing import Any

import numpy as np
from opentelemetry.trace import SpanKind

from modeltrace import capture, runtime, semconv

# Longest label array recorded on one span (memory and span-size bound).
MAX_LABEL_ROWS = 8192
_MAX_LABEL_STRING = 256


def _label_attribute(label: Any) -> Any:
    if isinstance(label, np.ndarray):
        if label.ndim == 0:
            return capture.scalar_value(label.item(), _MAX_LABEL_STRING)
        label = label.reshape(-1).tolist()
    elif type(label).__module__.startswith("pandas") and hasattr(label, "tolist"):
        label = label.tolist()
    if isinstance(label, (list, tuple)):
        if len(label) > MAX_LABEL_ROWS:
            raise ValueError(
                f"label has {len(label)} rows; at most {MAX_LABEL_ROWS} per record_label call"
            )
        if not label:
            raise ValueError("label must not be empty")
        return capture.column_value(label, _MAX_LABEL_STRING)
    if label is None:
        raise ValueError("label must not be None")
    return capture.scalar_value(label, _MAX_LABEL_STRING)


def record_label(prediction_id: str, label: Any, model: str, version: str = "unknown") -> None:
    """Record the true ``label`` of prediction ``prediction_id`` (``current_prediction_id()``).

    ``label`` is a scalar, or a sequence aligned with the rows of the batch that
    prediction covered. Raises ``TypeError``/``ValueError`` on invalid arguments;
    a disabled modeltrace records nothing.
    """
    if not isinstance(prediction_id, str) or not prediction_id:
        raise TypeError(f"prediction_id must be a non-empty string, got {prediction_id!r}")
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version:
        raise TypeError(f"version must be a non-empty string, got {version!r}")
    value = _label_attribute(label)
    rt = runtime.current()
    if rt.settings.disabled:
        return
    try:
        span = rt.tracer.start_span(
            semconv.LABEL_SPAN_PREFIX + model,
            kind=SpanKind.INTERNAL,
            attributes={
                semconv.MODEL_NAME: model,
                semconv.MODEL_VERSION: version,
                semconv.PREDICTION_ID: prediction_id,
                semconv.LABEL_VALUE: value,
            },
        )
        span.end()
    except Exception as exc:
        runtime.report_internal_error("record_label", exc)
