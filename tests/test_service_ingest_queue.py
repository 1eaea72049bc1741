"""The group-commit ingestion queue against a real SQLite store.

The sink used here commits payloads to a real SQLite file in one transaction
per call (like ``ingest_durable``), so group commits, durability before the
answer, the busy store (a real lock held by another connection) and draining
on close are all checked on the real thing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from modeltrace.drift.service.ingest_queue import (
    CommitStats,
    IngestQueue,
    QueueClosedError,
    QueueFullError,
    StoreBusyError,
    is_store_busy,
)


@dataclass(frozen=True)
class Committed:
    accepted: int
    rejected: int
    reason: str | None


class SqliteSink:
    """Appends each payload as a row, one transaction per call; records call sizes."""

    def __init__(self, path: Path, delay: float = 0.0) -> None:
        self.path = path
        self.delay = delay
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS inbox (payload BLOB)")

    def __call__(self, payloads: list[bytes]) -> Sequence[Committed]:
        self.gate.wait()
        time.sleep(self.delay)
        db = sqlite3.connect(self.path, timeout=0.05)
        try:
            with db:
                db.executemany("INSERT INTO inbox VALUES (?)", [(p,) for p in payloads])
        finally:
            db.close()
        self.calls.append(len(payloads))
        return [Committed(len(p), 1 if p.startswith(b"bad") else 0, "bad") for p in payloads]

    def rows(self) -> list[bytes]:
        with sqlite3.connect(self.path) as db:
            return [row[0] for row in db.execute("SELECT payload FROM inbox ORDER BY rowid")]


def test_each_answer_comes_after_its_commit_and_requests_share_commits(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "s.db", delay=0.02)
    stats: list[CommitStats] = []
    queue: IngestQueue[Committed] = IngestQueue(sink, max_bytes=1 << 20, on_commit=stats.append)
    queue.start()
    payloads = [f"payload-{i}".encode() for i in range(200)]

    def send(payload: bytes) -> tuple[Committed, bool]:
        result = queue.submit(payload).result(timeout=10)
        return result, payload in sink.rows()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, payloads))
    assert all(committed for _, committed in answers)
    assert [r.accepted for r, _ in answers] == [len(p) for p in payloads]
    assert sorted(sink.rows()) == sorted(payloads)
    assert sum(sink.calls) == 200
    assert len(sink.calls) < 200 and max(sink.calls) > 1  # group commits happened
    assert sum(s.requests for s in stats) == 200 and all(s.ok for s in stats)
    assert queue.close(5)


def test_full_queue_refuses_at_once_and_frees_space_after_the_commit(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "s.db")
    sink.gate.clear()
    queue: IngestQueue[Committed] = IngestQueue(sink, max_bytes=100)
    queue.start()
    first = queue.submit(b"x" * 60)  # taken by the writer, which blocks on the gate
    deadline = time.monotonic() + 5
    while queue.depth and time.monotonic() < deadline:
        time.sleep(0.005)
    second = queue.submit(b"y" * 30)
    with pytest.raises(QueueFullError, match="ingestion queue full"):
        queue.submit(b"z" * 20)
    assert queue.queued_bytes == 90 and queue.depth == 1
    sink.gate.set()
    assert first.result(5).accepted == 60 and second.result(5).accepted == 30
    assert queue.submit(b"z" * 20).result(5).accepted == 20
    assert queue.close(5)


def test_locked_store_answers_store_busy_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sink = SqliteSink(path)
    queue: IngestQueue[Committed] = IngestQueue(sink, max_bytes=1 << 20)
    queue.start()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreBusyError, match="store busy: database is locked"):
            queue.submit(b"while locked").result(timeout=10)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert queue.submit(b"after").result(timeout=10).accepted == 5
    assert sink.rows() == [b"after"]
    assert queue.close(5)


def test_close_drains_everything_queued_then_refuses(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "s.db")
    sink.gate.clear()
    queue: IngestQueue[Committed] = IngestQueue(sink, max_bytes=1 << 20, max_batch_requests=7)
    queue.start()
    futures: list[Future[Committed]] = [queue.submit(b"p%d" % i) for i in range(50)]
    closer = threading.Thread(target=queue.close, args=(10,))
    closer.start()
    time.sleep(0.05)
    with pytest.raises(QueueClosedError):
        queue.submit(b"late")
    sink.gate.set()
    closer.join(10)
    assert all(f.result(0).rejected == 0 for f in futures)
    assert len(sink.rows()) == 50
    assert max(sink.calls) <= 7


def test_partial_results_pass_through_and_sink_errors_fail_only_their_batch(
    tmp_path: Path,
) -> None:
    sink = SqliteSink(tmp_path / "s.db")
    queue: IngestQueue[Committed] = IngestQueue(sink, max_bytes=1 << 20)
    queue.start()
    assert queue.submit(b"bad-span").result(5).rejected == 1

    def broken(payloads: list[bytes]) -> Sequence[Committed]:
        raise ValueError("boom")

    failing: IngestQueue[Committed] = IngestQueue(broken, max_bytes=1 << 20)
    failing.start()
    with pytest.raises(ValueError, match="boom"):
        failing.submit(b"x").result(5)
    assert failing.running
    assert queue.close(5) and failing.close(5)


def test_maintenance_runs_periodically_on_the_writer_thread(tmp_path: Path) -> None:
    threads: list[str] = []
    sink = SqliteSink(tmp_path / "s.db")
    queue: IngestQueue[Committed] = IngestQueue(
        sink,
        max_bytes=1 << 20,
        maintenance=lambda: threads.append(threading.current_thread().name),
        maintenance_interval=0.05,
        name="writer-under-test",
    )
    queue.start()
    time.sleep(0.3)
    queue.submit(b"x").result(5)
    assert queue.close(5)
    assert len(threads) >= 3 and set(threads) == {"writer-under-test"}


def test_busy_classification() -> None:
    assert is_store_busy(sqlite3.OperationalError("database is locked"))
    assert is_store_busy(sqlite3.OperationalError("database or disk is full"))
    assert not is_store_busy(sqlite3.OperationalError("no such table: x"))
    assert not is_store_busy(ValueError("x"))
