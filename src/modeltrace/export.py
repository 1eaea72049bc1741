"""A batching span processor that never blocks the caller and counts every span it loses.

Like the SDK's ``BatchSpanProcessor`` (bounded queue, background export
thread), plus: each span dropped (queue full, after shutdown, or in a failed
export) is reported to ``on_drop(count, reason)``, which ``configure()`` wires
to the ``modeltrace.sdk.spans.dropped`` counter; shutdown is bounded by its
timeout even when the exporter hangs on a dead endpoint; the worker restarts
after ``fork()`` (pre-fork servers such as gunicorn).

While the queue is more than two batches deep, ``on_end`` gives the export
thread its share of the GIL (``modeltrace.worker_yield``): a model that releases
and re-takes the GIL on every call (scikit-learn's predict) otherwise starves it.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from modeltrace.worker_yield import WorkerYield

logger = logging.getLogger("modeltrace")

DropCallback = Callable[[int, str], None]

# Defaults chosen so a single process serving a scikit-learn model loses no span
# (README "Overhead", benchmarks/span_drops.py): an export request has a fixed cost
# (round trip, and GIL re-acquisitions while the model thread holds it), so 2048
# spans per request deliver about 4x the spans/s of the SDK's 512; the 16384-span
# queue absorbs seconds of a slow endpoint; exports start at least every second.
DEFAULT_MAX_QUEUE_SIZE = 16384
DEFAULT_MAX_EXPORT_BATCH_SIZE = 2048
DEFAULT_SCHEDULE_DELAY_MILLIS = 1000
DEFAULT_EXPORT_TIMEOUT_MILLIS = 10000

REASON_QUEUE_FULL = "queue_full"
REASON_SHUTDOWN = "shutdown"
REASON_EXPORT_FAILED = "export_failed"


def _ignore_drop(count: int, reason: str) -> None:
    return None


class DropCountingSpanProcessor(SpanProcessor):
    """Bounded-queue batch export on a background thread; drops are counted, never blocking."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
        schedule_delay_millis: float = DEFAULT_SCHEDULE_DELAY_MILLIS,
        on_drop: DropCallback = _ignore_drop,
    ) -> None:
        if max_queue_size <= 0:
            raise ValueError(f"max_queue_size must be > 0, got {max_queue_size}")
        if not 0 < max_export_batch_size <= max_queue_size:
            raise ValueError(
                f"max_export_batch_size must be in 1..max_queue_size ({max_queue_size}), "
                f"got {max_export_batch_size}"
            )
        if schedule_delay_millis <= 0:
            raise ValueError(f"schedule_delay_millis must be > 0, got {schedule_delay_millis}")
        self._exporter = exporter
        self._max_queue_size = max_queue_size
        self._batch_size = max_export_batch_size
        self._delay = schedule_delay_millis / 1000.0
        self._on_drop = on_drop
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._shutdown = False
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        # Guards taking a batch off the queue and the count of spans being exported, so a
        # shutdown that gives up counts every undelivered span exactly once.
        self._count_lock = threading.Lock()
        self._in_flight = 0
        self._abandoned = False
        self._yield_above = min(2 * max_export_batch_size, max_queue_size // 2)
        self._worker_yield = WorkerYield()
        self._start_worker()
        if hasattr(os, "register_at_fork"):
            self_ref = weakref.ref(self)

            def _after_fork_in_child() -> None:
                processor = self_ref()
                if processor is not None:
                    processor._reinit_after_fork()

            os.register_at_fork(after_in_child=_after_fork_in_child)

    # -- SpanProcessor --------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if self._shutdown:
            self._drop(1, REASON_SHUTDOWN)
            return
        queue = self._queue
        if len(queue) >= self._max_queue_size:
            self._drop(1, REASON_QUEUE_FULL)
            return
        queue.append(span)
        length = len(queue)
        if length >= self._batch_size:
            self._wake.set()
            if length > self._yield_above:
                self._worker_yield.over_mark(length, self._yield_above)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; False if that did not finish within the timeout.

        Also waits for a batch the worker took from the queue and is exporting.
        """
        deadline = time.monotonic() + timeout_millis / 1000.0
        while True:
            # Taking the export lock waits for an in-flight batch even when the queue is empty.
            if not self._export_one_batch(deadline):
                return False
            if not self._queue:
                return True
            if time.monotonic() >= deadline:
                return False

    def shutdown(self, timeout_millis: int = 5000) -> None:
        if self._shutdown:
            return
        deadline = time.monotonic() + timeout_millis / 1000.0
        self._shutdown = True
        self._wake.set()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        remaining = max(0.0, deadline - time.monotonic())
        finished = threading.Event()

        def _final_export() -> None:
            try:
                self.force_flush(int(remaining * 1000))
                self._exporter.shutdown()
            except Exception:
                logger.exception("modeltrace: span exporter shutdown failed")
            finally:
                finished.set()

        closer = threading.Thread(target=_final_export, name="modeltrace-span-close", daemon=True)
        closer.start()
        if not finished.wait(remaining):
            with self._count_lock:
                self._abandoned = True
                left = len(self._queue) + self._in_flight
                self._queue.clear()
            if left:
                self._drop(left, REASON_SHUTDOWN)
            logger.warning(
                "modeltrace: span exporter did not finish within the shutdown timeout; "
                "%d queued span(s) abandoned",
                left,
            )

    # -- internals ------------------------------------------------------------
    def queue_length(self) -> int:
        return len(self._queue)

    def _drop(self, count: int, reason: str) -> None:
        try:
            self._on_drop(count, reason)
        except Exception:
            logger.debug("modeltrace: drop callback failed", exc_info=True)

    def _start_worker(self) -> None:
        self._worker = threading.Thread(
            target=self._run, name="modeltrace-span-export", daemon=True
        )
        self._worker.start()
        self._worker_yield.watch(self._worker)

    def _reinit_after_fork(self) -> None:
        self._queue.clear()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._in_flight = 0
        if not self._shutdown:
            self._start_worker()

    def _run(self) -> None:
        while not self._shutdown:
            self._wake.wait(self._delay)
            self._wake.clear()
            while self._queue and not self._shutdown:
                self._export_one_batch(None)
                if len(self._queue) < self._batch_size:
                    break

    def _export_one_batch(self, deadline: float | None) -> bool:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._export_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            batch: list[ReadableSpan] = []
            queue = self._queue
            with self._count_lock:
                while queue and len(batch) < self._batch_size:
                    batch.append(queue.popleft())
                self._in_flight += len(batch)
            if not batch:
                return True
            try:
                result = self._exporter.export(batch)
            except Exception:
                logger.exception("modeltrace: span export raised")
                result = SpanExportResult.FAILURE
            with self._count_lock:
                self._in_flight -= len(batch)
                counted_at_shutdown = self._abandoned
            # A shutdown that gave up already counted this batch as lost.
            if result is not SpanExportResult.SUCCESS and not counted_at_shutdown:
                self._drop(len(batch), REASON_EXPORT_FAILED)
            return True
        finally:
            self._export_lock.release()
