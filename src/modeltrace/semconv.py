"""Telemetry names of modeltrace: span attributes, span names and metric names.

These names are a public contract (``SPEC.md``, "Telemetry names"): dashboards,
alert rules, the Collector configuration and the drift aggregator all depend
on them. Every module that emits or reads telemetry takes its names from here.
"""

from __future__ import annotations

# --- span attributes -------------------------------------------------------
MODEL_NAME = "ml.model.name"
MODEL_VERSION = "ml.model.version"
MODEL_FRAMEWORK = "ml.model.framework"
MODEL_TASK = "ml.model.task"
MODEL_OPERATION = "ml.model.operation"
PREDICTION_ID = "ml.prediction.id"
BATCH_SIZE = "ml.batch.size"
SAMPLE_RATE = "ml.sample.rate"
SAMPLE_INDICES = "ml.sample.indices"
FEATURE_PREFIX = "ml.feature."
FEATURES_TRUNCATED = "ml.features.truncated"
PREDICTION_VALUE = "ml.prediction.value"
PREDICTION_SCORE = "ml.prediction.score"
LABEL_VALUE = "ml.label.value"
# Embedding capture (modeltrace.embedding): a seeded random projection per captured row.
EMBEDDING_PROJECTION = "ml.embedding.projection"  # "gaussian:seed=S:k=K:d=D"
EMBEDDING_VECTOR = "ml.embedding.vector"  # double[]: rows x k, row-major, aligned with indices
EMBEDDING_NORM = "ml.embedding.norm"  # double or double[]: norm of each original vector
ERROR_TYPE = "error.type"

# --- span names ------------------------------------------------------------
PREDICT_SPAN_PREFIX = "predict "
LABEL_SPAN_PREFIX = "label "

# --- SDK metrics -----------------------------------------------------------
METRIC_PREDICT_DURATION = "ml.model.predict.duration"
METRIC_PREDICT_ERRORS = "ml.model.predict.errors"
METRIC_PREDICTIONS = "ml.model.predictions"
METRIC_BATCH_SIZE = "ml.model.batch.size"
METRIC_PREDICTION_VALUE = "ml.model.prediction.value"

# --- SDK self-metrics ------------------------------------------------------
# Internal failures of the instrumentation (attribute error.type = the cause).
METRIC_SDK_ERRORS = "modeltrace.sdk.errors"
# Finished spans dropped by modeltrace's span processor (queue full, shut down).
METRIC_SDK_SPANS_DROPPED = "modeltrace.sdk.spans.dropped"
DROP_REASON = "modeltrace.drop.reason"

# --- aggregator metrics and their attributes -------------------------------
METRIC_DRIFT_SCORE = "ml.drift.score"
METRIC_DRIFT_DETECTED = "ml.drift.detected"
METRIC_DRIFT_SHARE = "ml.drift.share"
METRIC_DRIFT_SAMPLES = "ml.drift.samples"
METRIC_MISSING_RATIO = "ml.data.missing.ratio"
METRIC_PERFORMANCE = "ml.model.performance"
FEATURE_NAME = "ml.feature.name"
DRIFT_METHOD = "ml.drift.method"
PERFORMANCE_METRIC = "ml.performance.metric"
# ml.performance.metric values of estimated (CBPE) performance carry this prefix
# ("estimated_accuracy"); realized ones are the bare metric names ("accuracy").
ESTIMATED_METRIC_PREFIX = "estimated_"

# --- aggregator label-join metrics ------------------------------------------
# Label rows by outcome (received, matched, duplicate, not_captured, late, unmatched).
METRIC_JOIN_LABELS = "modeltrace.join.labels"
# Captured prediction rows by outcome (buffered, expired, evicted).
METRIC_JOIN_PREDICTIONS = "modeltrace.join.predictions"
# Rows waiting now (modeltrace.join.side = label | prediction).
METRIC_JOIN_PENDING = "modeltrace.join.pending"
JOIN_OUTCOME = "modeltrace.join.outcome"
JOIN_SIDE = "modeltrace.join.side"

# Prediction drift is reported as this pseudo-feature.
PREDICTION_FEATURE = "__prediction__"
# Dataset-level multivariate entries of a DriftReport.
MULTIVARIATE_FEATURE = "__multivariate__"
EMBEDDING_FEATURE = "__embedding__"

# Instrumentation scope name used for tracers and meters.
SCOPE = "modeltrace"
