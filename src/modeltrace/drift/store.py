"""SQLite persistence of the drift aggregator (stdlib ``sqlite3``, WAL).

Tables (schema version ``SCHEMA_VERSION``, kept in ``meta``):

* ``reference_sets`` — one ``Reference`` JSON per (model, version);
* ``window_states`` — the serialized ``ModelWindow`` of each (model, version);
* ``model_stats`` — per (model, version) counters (spans, rows, ...) as JSON;
* ``inbox`` — acknowledged raw OTLP requests not yet covered by a checkpoint;
* ``report_history`` — past ``DriftReport`` JSON, the newest ``history_limit``
  per (model, version);
* ``join_states`` — the serialized label ``JoinBuffer`` of each (model, version)
  (schema 2), written with the window states at each checkpoint;
* ``performance_settings`` — per (model, version) SLO thresholds and task as
  JSON (schema 2).

Schema 1 stores are migrated to 2 when opened for writing (new tables only);
read-only access accepts both.

One connection, guarded by a lock, serves every thread; ``read_only=True``
opens an existing store for reading only (``modeltrace report`` next to a
running service). ``":memory:"`` gives
a private in-memory store (for tests). Durability: a committed inbox row
survives a crash of the process (WAL, ``synchronous=NORMAL``); ``checkpoint``
replaces window states and deletes the inbox rows they include in one
transaction, so state and inbox never double count.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEMA_VERSION", "DriftStore", "StoreError", "StoredReport"]

SCHEMA_VERSION = 2
# Versions this code reads; older ones are migrated on a writable open.
READABLE_SCHEMA_VERSIONS = (1, 2)
DEFAULT_HISTORY_LIMIT = 200
# Inbox rows read per query while replaying (bounds replay memory).
REPLAY_BATCH = 64
PAGE_SIZE = 65536
# Page cache of the writing connection, KiB (bounded: part of the service's RSS).
CACHE_KIB = 32 * 1024
# WAL pages after which a commit copies the WAL back into the database (16 MiB):
# smaller, more frequent checkpoints instead of a 64 MiB stall.
WAL_AUTOCHECKPOINT_PAGES = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reference_sets (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    json TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS window_states (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    state BLOB NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS model_stats (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload BLOB NOT NULL,
    received REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS report_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    ts REAL NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS report_history_model ON report_history (model, version, id);
CREATE TABLE IF NOT EXISTS join_states (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    state BLOB NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS performance_settings (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
"""


class StoreError(RuntimeError):
    """The store file cannot be used (not a database, newer schema, ...)."""


@dataclass(frozen=True, slots=True)
class StoredReport:
    """One row of the report history."""

    model: str
    version: str
    ts: float
    json: str


class DriftStore:
    """Thread-safe access to the aggregator's SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str] = "modeltrace.db",
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        read_only: bool = False,
    ) -> None:
        if not isinstance(history_limit, int) or history_limit < 1:
            raise ValueError(f"history_limit must be a positive integer, got {history_limit!r}")
        self.path = os.fspath(path)
        self.history_limit = history_limit
        self.read_only = bool(read_only)
        self._lock = threading.RLock()
        self._closed = False
        if self.read_only and (self.path == ":memory:" or not os.path.isfile(self.path)):
            raise StoreError(f"no store at {self.path!r}")
        try:
            if self.read_only:
                uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30.0
                )
            else:
                self._conn = sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None, timeout=30.0
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path!r}: {exc}") from exc
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"{self.path!r} is not a usable modeltrace store: {exc}") from exc
        except StoreError:
            self._conn.close()
            raise

    # -- lifecycle --

    def _setup(self) -> None:
        conn = self._conn
        if self.read_only:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None or int(row[0]) not in READABLE_SCHEMA_VERSIONS:
                raise StoreError(
                    f"store {self.path!r} has schema version {row and row[0]}; this modeltrace "
                    f"reads version {SCHEMA_VERSION}"
                )
            return
        if self.path != ":memory:":
            # Inbox rows are ~1 MB OTLP requests: 64 KiB pages (effective for new
            # stores only; existing ones keep theirs) and a cache that holds a group
            # commit keep their insert to a few large page writes, with no spill
            # of the transaction into the WAL before COMMIT.
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot switch {self.path!r} to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._transaction():
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            row = (
                conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if has_meta
                else None
            )
            if row is not None and int(row[0]) not in READABLE_SCHEMA_VERSIONS:
                raise StoreError(
                    f"store {self.path!r} has schema version {row[0]}; this modeltrace "
                    f"reads version {SCHEMA_VERSION}"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) < SCHEMA_VERSION:
                # 1 -> 2: the join_states and performance_settings tables (created above).
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path!r} has schema version {row[0]}; this modeltrace "
                    f"reads version {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        """Close the connection (idempotent). Uncheckpointed data stays in the inbox."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> DriftStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Transaction:
        def __init__(self, store: DriftStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            if self.store._closed or self.store.read_only:
                self.store._lock.release()
                state = "closed" if self.store._closed else "read-only"
                raise StoreError(f"the store is {state}")
            try:
                self.store._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._conn

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            try:
                if exc_type is None:
                    self.store._conn.execute("COMMIT")
                else:
                    self.store._conn.execute("ROLLBACK")
            finally:
                self.store._lock.release()

    def _transaction(self) -> DriftStore._Transaction:
        return DriftStore._Transaction(self)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            return self._conn.execute(sql, params).fetchall()

    # -- references --

    def put_reference(self, model: str, version: str, json_text: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO reference_sets (model, version, json, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, version) DO UPDATE SET json = excluded.json, "
                "updated = excluded.updated",
                (model, version, json_text, time.time()),
            )

    def references(self) -> list[tuple[str, str, str]]:
        """Every stored reference as (model, version, json)."""
        rows = self._query(
            "SELECT model, version, json FROM reference_sets ORDER BY model, version"
        )
        return [(str(m), str(v), str(j)) for m, v, j in rows]

    # -- window state and model counters --

    def load_windows(self) -> list[tuple[str, str, bytes]]:
        rows = self._query(
            "SELECT model, version, state FROM window_states ORDER BY model, version"
        )
        return [(str(m), str(v), bytes(s)) for m, v, s in rows]

    def load_stats(self) -> list[tuple[str, str, str]]:
        rows = self._query("SELECT model, version, json FROM model_stats ORDER BY model, version")
        return [(str(m), str(v), str(j)) for m, v, j in rows]

    def checkpoint(
        self,
        windows: Mapping[tuple[str, str], bytes],
        stats: Mapping[tuple[str, str], str],
        applied_inbox_id: int,
        *,
        drop_windows: Iterable[tuple[str, str]] = (),
        joins: Mapping[tuple[str, str], bytes] | None = None,
    ) -> int:
        """In one transaction: upsert window states, label join states and counters,
        delete the states of ``drop_windows`` and the inbox rows up to
        ``applied_inbox_id`` (included).

        Returns how many inbox rows were deleted."""
        now = time.time()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO join_states (model, version, state, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, version) DO UPDATE SET state = excluded.state, "
                "updated = excluded.updated",
                [(m, v, state, now) for (m, v), state in (joins or {}).items()],
            )
            conn.executemany(
                "DELETE FROM window_states WHERE model = ? AND version = ?", list(drop_windows)
            )
            conn.executemany(
                "INSERT INTO window_states (model, version, state, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, version) DO UPDATE SET state = excluded.state, "
                "updated = excluded.updated",
                [(m, v, state, now) for (m, v), state in windows.items()],
            )
            conn.executemany(
                "INSERT INTO model_stats (model, version, json) VALUES (?, ?, ?) "
                "ON CONFLICT (model, version) DO UPDATE SET json = excluded.json",
                [(m, v, text) for (m, v), text in stats.items()],
            )
            cursor = conn.execute("DELETE FROM inbox WHERE id <= ?", (int(applied_inbox_id),))
            return int(cursor.rowcount)

    def load_joins(self) -> list[tuple[str, str, bytes]]:
        """Every stored label join state as (model, version, state)."""
        if not self._has_table("join_states"):
            return []
        rows = self._query("SELECT model, version, state FROM join_states ORDER BY model, version")
        return [(str(m), str(v), bytes(s)) for m, v, s in rows]

    # -- performance settings (SLO thresholds, task) --

    def put_performance_settings(self, model: str, version: str, json_text: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO performance_settings (model, version, json) VALUES (?, ?, ?) "
                "ON CONFLICT (model, version) DO UPDATE SET json = excluded.json",
                (model, version, json_text),
            )

    def performance_settings(self) -> list[tuple[str, str, str]]:
        """Every stored performance setting as (model, version, json)."""
        if not self._has_table("performance_settings"):
            return []
        rows = self._query(
            "SELECT model, version, json FROM performance_settings ORDER BY model, version"
        )
        return [(str(m), str(v), str(j)) for m, v, j in rows]

    def _has_table(self, name: str) -> bool:
        """False for the tables a read-only schema-1 store does not have yet."""
        return bool(
            self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        )

    # -- inbox --

    def append_inbox(self, payloads: Sequence[bytes]) -> list[int]:
        """Append payloads in one committed transaction; return their ids (ascending)."""
        now = time.time()
        ids: list[int] = []
        with self._transaction() as conn:
            for payload in payloads:
                cursor = conn.execute(
                    "INSERT INTO inbox (payload, received) VALUES (?, ?)", (bytes(payload), now)
                )
                ids.append(int(cursor.lastrowid or 0))
        return ids

    def inbox(self, after_id: int = 0) -> Iterator[tuple[int, bytes]]:
        """Inbox rows with id > ``after_id`` in order, read in small batches."""
        last = int(after_id)
        while True:
            rows = self._query(
                "SELECT id, payload FROM inbox WHERE id > ? ORDER BY id LIMIT ?",
                (last, REPLAY_BATCH),
            )
            if not rows:
                return
            for row_id, payload in rows:
                last = int(row_id)
                yield last, bytes(payload)

    def inbox_size(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM inbox")[0][0])

    # -- report history --

    def add_report(self, model: str, version: str, ts: float, json_text: str) -> None:
        """Record a report and prune the history of (model, version) to ``history_limit``."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO report_history (model, version, ts, json) VALUES (?, ?, ?, ?)",
                (model, version, float(ts), json_text),
            )
            conn.execute(
                "DELETE FROM report_history WHERE model = ? AND version = ? AND id <= ("
                "SELECT id FROM report_history WHERE model = ? AND version = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (model, version, model, version, self.history_limit),
            )

    def reports(
        self, model: str, version: str | None = None, limit: int = 50
    ) -> list[StoredReport]:
        """Past reports of ``model`` (one version or all), newest first."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if version is None:
            rows = self._query(
                "SELECT model, version, ts, json FROM report_history WHERE model = ? "
                "ORDER BY id DESC LIMIT ?",
                (model, limit),
            )
        else:
            rows = self._query(
                "SELECT model, version, ts, json FROM report_history "
                "WHERE model = ? AND version = ? ORDER BY id DESC LIMIT ?",
                (model, version, limit),
            )
        return [StoredReport(str(m), str(v), float(t), str(j)) for m, v, t, j in rows]

    def report_models(self) -> list[tuple[str, str]]:
        """(model, version) pairs that have a report history."""
        rows = self._query(
            "SELECT DISTINCT model, version FROM report_history ORDER BY model, version"
        )
        return [(str(m), str(v)) for m, v in rows]
