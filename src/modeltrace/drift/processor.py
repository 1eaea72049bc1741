"""``DriftSpanProcessor``: feeds finished prediction spans to a ``DriftAggregator``.

This is the embedded mode (``modeltrace.configure(drift=agg)``): no collector,
no service. ``on_end`` runs on the application's thread, so it only checks the
span name and appends the span to a bounded buffer; a daemon worker thread hands
the buffered spans to ``DriftAggregator.ingest`` in batches. When the buffer is
full, further spans are dropped and counted (``dropped_spans``): the
application is never blocked, and nothing raised by the aggregator reaches it.
While more than two batches wait, ``on_end`` gives the worker its share of the
GIL (``modeltrace.worker_yield``): a model that releases and re-takes the GIL on
every call (scikit-learn's predict) otherwise starves it and the buffer fills.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from modeltrace import semconv
from modeltrace.worker_yield import WorkerYield

if TYPE_CHECKING:
    from modeltrace.drift.aggregator import DriftAggregator

__all__ = ["DriftSpanProcessor"]

logger = logging.getLogger("modeltrace.drift")

_PREFIXES = (semconv.PREDICT_SPAN_PREFIX, semconv.LABEL_SPAN_PREFIX)


class DriftSpanProcessor(SpanProcessor):
    """Buffers finished prediction and label spans; a worker ingests them in batches.

    ``max_queue``: spans buffered at most (beyond: dropped and counted);
    ``batch_size``: spans per ``ingest`` call, and the buffer size that wakes the
    worker early; ``interval``: seconds between ingestions otherwise.
    """

    def __init__(
        self,
        aggregator: DriftAggregator,
        *,
        max_queue: int = 20_000,
        batch_size: int = 512,
        interval: float = 0.5,
    ) -> None:
        for name, value in (("max_queue", max_queue), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(interval, (int, float)) and 0 < interval < float("inf")):
            raise ValueError(f"interval must be a finite number of seconds > 0, got {interval!r}")
        self._aggregator = aggregator
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = float(interval)
        self._buffer: deque[ReadableSpan] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._ingest_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._worker_yield = WorkerYield()
        self._yield_above = min(2 * batch_size, max_queue // 2)
        self._pid = os.getpid()
        self._shutdown = False
        self._failure_logged = False
        self.dropped_spans = 0
        self.ingested_spans = 0

    # -- SpanProcessor --

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            name = span.name
            if self._shutdown or not name or not name.startswith(_PREFIXES):
                return
            if len(self._buffer) >= self.max_queue:
                self.dropped_spans += 1
                return
            self._buffer.append(span)
            if self._worker is None or self._pid != os.getpid():
                self._start_worker()
            queued = len(self._buffer)
            if queued >= self.batch_size:
                with self._wake:
                    self._wake.notify()
                if queued > self._yield_above:
                    self._worker_yield.over_mark(queued, self._yield_above)
        except Exception:  # never into the application
            self._log_failure("queueing a span for drift failed")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000.0
        while self._buffer:
            if time.monotonic() > deadline:
                return False
            self._drain_once()
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self.force_flush()
        self._shutdown = True
        with self._wake:
            self._wake.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=5.0)

    # -- worker --

    def _start_worker(self) -> None:
        with self._wake:
            if self._worker is not None and self._pid == os.getpid():
                return
            # After a fork the parent's worker does not exist in the child.
            self._pid = os.getpid()
            self._worker = threading.Thread(
                target=self._run, name="modeltrace-drift-ingest", daemon=True
            )
            self._worker.start()
            self._worker_yield.watch(self._worker)

    def _run(self) -> None:
        while not self._shutdown:
            with self._wake:
                if len(self._buffer) < self.batch_size and not self._shutdown:
                    self._wake.wait(self.interval)
            self._drain_once()

    def _drain_once(self) -> None:
        with self._ingest_lock:
            batch: list[ReadableSpan] = []
            buffer = self._buffer
            while buffer and len(batch) < self.batch_size:
                batch.append(buffer.popleft())
            if not batch:
                return
            try:
                self._aggregator.ingest(batch)
                self.ingested_spans += len(batch)
            except Exception:
                self._log_failure("drift ingestion of finished spans failed")

    def _log_failure(self, message: str) -> None:
        if not self._failure_logged:
            self._failure_logged = True
            logger.exception("%s (logged once)", message)
