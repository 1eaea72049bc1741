"""DriftStore: schema, WAL, inbox, atomic checkpoints, bounded history, threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from modeltrace.drift.store import SCHEMA_VERSION, DriftStore, StoreError


def test_file_store_is_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with DriftStore(path):
        pass
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        DriftStore(path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable modeltrace store"):
        DriftStore(path)


def test_references_survive_reopen_and_upsert(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with DriftStore(path) as store:
        store.put_reference("churn", "3", '{"a": 1}')
        store.put_reference("churn", "3", '{"a": 2}')
        store.put_reference("fraud", "1", '{"b": 1}')
    with DriftStore(path) as store:
        assert store.references() == [("churn", "3", '{"a": 2}'), ("fraud", "1", '{"b": 1}')]


def test_inbox_and_atomic_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = DriftStore(path)
    ids = store.append_inbox([b"one", b"two", b"three"])
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [p for _, p in store.inbox()] == [b"one", b"two", b"three"]
    deleted = store.checkpoint({("m", "1"): b"state-1"}, {("m", "1"): '{"spans": 2}'}, ids[1])
    assert deleted == 2
    assert [p for _, p in store.inbox()] == [b"three"]
    store.close()  # "crash": no further checkpoint
    with DriftStore(path) as again:
        assert again.load_windows() == [("m", "1", b"state-1")]
        assert again.load_stats() == [("m", "1", '{"spans": 2}')]
        assert [(i, p) for i, p in again.inbox()] == [(ids[2], b"three")]
        again.checkpoint({("m", "1"): b"state-2"}, {}, ids[2], drop_windows=[("x", "y")])
        assert again.load_windows() == [("m", "1", b"state-2")]
        assert again.inbox_size() == 0
        again.checkpoint({}, {}, 0, drop_windows=[("m", "1")])
        assert again.load_windows() == []


def test_failed_checkpoint_changes_nothing(tmp_path: Path) -> None:
    store = DriftStore(tmp_path / "s.db")
    ids = store.append_inbox([b"a"])
    store.checkpoint({("m", "1"): b"old"}, {}, 0)
    with pytest.raises(sqlite3.Error):
        # the old state is deleted, then a None state violates NOT NULL: all rolled back
        store.checkpoint(
            {("m", "2"): None},  # type: ignore[dict-item]
            {},
            ids[0],
            drop_windows=[("m", "1")],
        )
    assert store.load_windows() == [("m", "1", b"old")]
    assert store.inbox_size() == 1
    store.close()


def test_report_history_is_bounded_newest_first() -> None:
    store = DriftStore(":memory:", history_limit=5)
    for i in range(12):
        store.add_report("m", "1", float(i), f'{{"i": {i}}}')
    store.add_report("m", "2", 100.0, "{}")
    rows = store.reports("m", "1", limit=50)
    assert [r.ts for r in rows] == [11.0, 10.0, 9.0, 8.0, 7.0]
    assert len(store.reports("m", None, limit=50)) == 6
    assert store.report_models() == [("m", "1"), ("m", "2")]
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.reports("m")


def test_concurrent_writers_keep_every_row(tmp_path: Path) -> None:
    store = DriftStore(tmp_path / "s.db")
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(50):
                store.append_inbox([f"{k}-{i}".encode()])
                store.add_report("m", str(k), float(i), "{}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.inbox_size() == 200
    assert sorted(p for _, p in store.inbox()) == sorted(
        f"{k}-{i}".encode() for k in range(4) for i in range(50)
    )
    store.close()


def test_memory_store_and_bad_arguments() -> None:
    with DriftStore(":memory:") as store:
        store.put_reference("m", "1", "{}")
        assert store.references() == [("m", "1", "{}")]
    with pytest.raises(ValueError, match="history_limit"):
        DriftStore(":memory:", history_limit=0)
