"""Bounded ingestion queue with one writer thread doing group commits.

Receivers (HTTP handlers, gRPC workers) :meth:`IngestQueue.submit` serialized
OTLP requests (optionally with what the receiver already decoded of them, so the
writer need not decode again) and wait on the returned future; the writer thread takes every
request waiting (up to a batch limit), hands them to the sink in one call (the
aggregator's ``ingest_durable``, one SQLite transaction) and then resolves the
futures. A request is therefore acknowledged only after it is committed, and
many concurrent requests share one commit.

The queue is bounded in bytes: a submit that does not fit raises
:class:`QueueFullError` at once (the receiver answers 429 / RESOURCE_EXHAUSTED).
A sink failure caused by a locked or busy database resolves the batch with
:class:`StoreBusyError` (503 / UNAVAILABLE); both are retryable by OTLP clients.
Periodic maintenance (checkpoints) runs on the same thread, between batches,
so the store has a single writer.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, cast

ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)

logger = logging.getLogger("modeltrace.service.ingest")


class QueueFullError(RuntimeError):
    """The queue holds as many bytes as it may; the client should retry later."""


class QueueClosedError(RuntimeError):
    """The service is shutting down and accepts no more requests."""


class StoreBusyError(RuntimeError):
    """The store could not commit (locked, busy or out of space); retry later."""


def is_store_busy(exc: BaseException) -> bool:
    """Whether a sink failure is transient: SQLite locked/busy/full, or an OS-level I/O error."""
    if isinstance(exc, StoreBusyError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(word in text for word in ("locked", "busy", "disk", "full", "i/o"))
    return isinstance(exc, OSError)


class Sink(Protocol[ResultT_co]):
    """Commits a batch of payloads, one result per payload in order.

    ``prepared`` (one entry per payload, ``None`` where the receiver decoded
    nothing) is passed only when at least one payload came with it."""

    def __call__(
        self, payloads: list[bytes], prepared: list[object | None] | None = None, /
    ) -> Sequence[ResultT_co]: ...


@dataclass
class _Item(Generic[ResultT]):
    payload: bytes
    future: Future[ResultT]
    prepared: object | None = None


@dataclass(frozen=True)
class CommitStats:
    """What one group commit did, for self-metrics."""

    requests: int
    payload_bytes: int
    seconds: float
    ok: bool


class IngestQueue(Generic[ResultT]):
    """A byte-bounded FIFO of payloads drained by one writer thread in group commits."""

    def __init__(
        self,
        sink: Sink[ResultT] | Callable[[list[bytes]], Sequence[ResultT]],
        *,
        max_bytes: int,
        max_batch_requests: int = 512,
        max_batch_bytes: int = 32 * 1024 * 1024,
        maintenance: Callable[[], None] | None = None,
        maintenance_interval: float = 30.0,
        on_commit: Callable[[CommitStats], None] | None = None,
        name: str = "modeltrace-ingest-writer",
    ) -> None:
        if max_bytes <= 0 or max_batch_requests <= 0 or max_batch_bytes <= 0:
            raise ValueError("queue limits must be positive")
        self._sink = sink
        self._max_bytes = max_bytes
        self._max_batch_requests = max_batch_requests
        self._max_batch_bytes = max_batch_bytes
        self._maintenance = maintenance
        self._maintenance_interval = maintenance_interval
        self._on_commit = on_commit
        self._items: deque[_Item[ResultT]] = deque()
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    # -- receiver side ------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def submit(self, payload: bytes, prepared: object | None = None) -> Future[ResultT]:
        """Enqueue one payload (with what the receiver decoded of it, handed to the sink
        as is); raises QueueFullError / QueueClosedError instead of waiting."""
        future: Future[ResultT] = Future()
        size = len(payload)
        with self._cond:
            if self._closed:
                raise QueueClosedError("the service is shutting down")
            if self._bytes + size > self._max_bytes and self._items:
                raise QueueFullError(
                    f"ingestion queue full ({self._bytes} of {self._max_bytes} bytes waiting)"
                )
            self._items.append(_Item(payload, future, prepared))
            self._bytes += size
            self._cond.notify()
        return future

    @property
    def depth(self) -> int:
        """Requests waiting for their commit."""
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, commit everything already queued, stop the writer; True if drained."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._started:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- writer side --------------------------------------------------------
    def _take_batch(self) -> list[_Item[ResultT]]:
        batch: list[_Item[ResultT]] = []
        batch_bytes = 0
        while self._items and len(batch) < self._max_batch_requests:
            size = len(self._items[0].payload)
            if batch and batch_bytes + size > self._max_batch_bytes:
                break
            item = self._items.popleft()
            batch.append(item)
            batch_bytes += size
        return batch

    def _run(self) -> None:
        next_maintenance = time.monotonic() + self._maintenance_interval
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    wait = next_maintenance - time.monotonic()
                    if self._maintenance is not None and wait <= 0:
                        break
                    self._cond.wait(timeout=wait if self._maintenance is not None else None)
                if not self._items and self._closed:
                    return
                batch = self._take_batch()
            if batch:
                self._commit(batch)
                with self._cond:
                    self._bytes -= sum(len(item.payload) for item in batch)
            if self._maintenance is not None and time.monotonic() >= next_maintenance:
                self._run_maintenance()
                next_maintenance = time.monotonic() + self._maintenance_interval

    def _run_maintenance(self) -> None:
        assert self._maintenance is not None
        try:
            self._maintenance()
        except Exception:
            logger.exception("periodic maintenance (checkpoint) failed; will retry")

    def _commit(self, batch: list[_Item[ResultT]]) -> None:
        payloads = [item.payload for item in batch]
        prepared = [item.prepared for item in batch]
        started = time.perf_counter()
        try:
            if any(p is not None for p in prepared):
                results = list(cast("Sink[ResultT]", self._sink)(payloads, prepared))
            else:
                results = list(self._sink(payloads))
            if len(results) != len(batch):
                raise RuntimeError(
                    f"sink returned {len(results)} results for {len(batch)} payloads"
                )
        except Exception as exc:
            self._report(batch, started, ok=False)
            if is_store_busy(exc):
                logger.warning("store busy, batch of %d requests refused: %s", len(batch), exc)
                error = StoreBusyError(f"store busy: {exc}")
                for item in batch:
                    item.future.set_exception(error)
            else:
                # Not retried here: the sink may have committed before failing, and a
                # second attempt could count the same spans twice.
                logger.error(
                    "ingestion of %d requests failed: %s: %s", len(batch), type(exc).__name__, exc
                )
                for item in batch:
                    item.future.set_exception(exc)
            return
        self._report(batch, started, ok=True)
        for item, result in zip(batch, results, strict=True):
            item.future.set_result(result)

    def _report(self, batch: list[_Item[ResultT]], started: float, *, ok: bool) -> None:
        if self._on_commit is None:
            return
        stats = CommitStats(
            requests=len(batch),
            payload_bytes=sum(len(item.payload) for item in batch),
            seconds=time.perf_counter() - started,
            ok=ok,
        )
        try:
            self._on_commit(stats)
        except Exception:
            logger.exception("commit callback failed")
