"""The store's schema: its version, its migrations, and the check that a file is a probe store at all.

Why migrations run in the file: the sender and the listener open the same store and may be
upgraded one after the other, so each step runs in its own write transaction and is skipped
when the other process took it first; a file newer than this probe, or of something else,
is refused before anything writes to it.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from shared.store.records import StoreError

SCHEMA_VERSION = 5
OUR_TABLES = frozenset({"meta", "events", "subscriptions"})

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        app_id        TEXT    NOT NULL,
        seqno         INTEGER NOT NULL,
        dataset       TEXT    NOT NULL,
        version       TEXT    NOT NULL,
        sent_at       REAL    NOT NULL,
        post_state    TEXT    NOT NULL DEFAULT 'pending',  -- pending / ok / failed
        post_error    TEXT,
        posted_at     REAL,
        state         TEXT    NOT NULL DEFAULT 'pending',
        received_at   REAL,
        latency       REAL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        judged_at     REAL,
        PRIMARY KEY (app_id, seqno)
    );
    CREATE INDEX events_open ON events (state, sent_at);
    CREATE TABLE subscriptions (
        id              INTEGER PRIMARY KEY,
        dataset         TEXT NOT NULL,
        connected_at    REAL NOT NULL,
        last_seen       REAL NOT NULL,
        disconnected_at REAL
    );
    CREATE INDEX subscriptions_open ON subscriptions (disconnected_at);
    """,
    # The missing-share gauges read the newest events by send time, every judgement round.
    2: """
    CREATE INDEX events_sent ON events (sent_at);
    """,
    # Many datasets in one store: seqnos, the newest received seqno and every judgement are per
    # dataset (the `dataset` column holds the dataset's name, which is its id in the single form).
    # SQLite cannot change a primary key, so the table is copied; the counters move under keys
    # of the datasets the events belong to, and the old per-process notes go.
    3: """
    CREATE TABLE events_v3 (
        app_id        TEXT    NOT NULL,
        seqno         INTEGER NOT NULL,
        dataset       TEXT    NOT NULL,
        version       TEXT    NOT NULL,
        sent_at       REAL    NOT NULL,
        post_state    TEXT    NOT NULL DEFAULT 'pending',
        post_error    TEXT,
        posted_at     REAL,
        state         TEXT    NOT NULL DEFAULT 'pending',
        received_at   REAL,
        latency       REAL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        judged_at     REAL,
        PRIMARY KEY (app_id, dataset, seqno)
    );
    INSERT INTO events_v3 SELECT app_id, seqno, dataset, version, sent_at, post_state, post_error, posted_at,
        state, received_at, latency, receive_count, judged_at FROM events;
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE INDEX events_open ON events (state, sent_at);
    CREATE INDEX events_sent ON events (dataset, sent_at);
    CREATE INDEX subscriptions_dataset ON subscriptions (dataset, connected_at);
    INSERT OR IGNORE INTO meta (key, value)
        SELECT 'next_seqno:' || d.dataset, m.value FROM meta m, (SELECT DISTINCT dataset FROM events) d
        WHERE m.key = 'next_seqno';
    INSERT OR IGNORE INTO meta (key, value)
        SELECT m.key || ':' || d.dataset, m.value FROM meta m, (SELECT DISTINCT dataset FROM events) d
        WHERE m.key LIKE 'max_received_seqno:%' AND m.key NOT LIKE 'max_received_seqno:%:%';
    DELETE FROM meta WHERE key = 'next_seqno'
        OR (key LIKE 'max_received_seqno:%' AND key NOT LIKE 'max_received_seqno:%:%')
        OR key IN ('note:sender', 'note:listener');
    """,
    # The failures the status page keeps longer than the retention (FAILURES_KEPT per dataset),
    # apart from the events so that pruning never reaches them.
    4: """
    CREATE TABLE failures (
        id      INTEGER PRIMARY KEY,
        app_id  TEXT    NOT NULL,
        dataset TEXT    NOT NULL,
        seqno   INTEGER NOT NULL,
        sent_at REAL    NOT NULL,
        kind    TEXT    NOT NULL,
        at      REAL    NOT NULL,
        detail  TEXT
    );
    CREATE INDEX failures_dataset ON failures (dataset, id);
    """,
    # Monotonic times beside the wall-clock ones: judging, latency and freshness on the system's
    # CLOCK_MONOTONIC (the same for every process of one boot), so that a step of the wall clock
    # never turns into lost, unobserved or a wrong latency. NULL where unknown (older rows, another
    # boot): those are judged by the wall clock as before. The instance key comes with it (below).
    5: """
    ALTER TABLE events ADD COLUMN sent_mono REAL;
    ALTER TABLE subscriptions ADD COLUMN connected_mono REAL;
    ALTER TABLE subscriptions ADD COLUMN last_seen_mono REAL;
    ALTER TABLE subscriptions ADD COLUMN disconnected_mono REAL;
    """,
}

# Schema 5 also brings the instance's secret key, which seals every event (shared/event.py), in
# the same transaction that marks the file version 5: killed at any point, the file is either
# without a key at 4 or with one at 5. An older probe refuses a store of 5, so no sender ever
# posts unsealed events to a listener that checks seals.
EVENT_KEY = "mac_key"  # its meta key
_PYTHON_MIGRATIONS = {
    5: lambda db: db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (EVENT_KEY, event_key_hex())),
}


def event_key_hex() -> str:
    return secrets.token_hex(32)


def check_identity(path: Path, version: int, tables: set[str]) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {path} has schema version {version}, newer than this probe's "
            f"{SCHEMA_VERSION}; run the newer probe or point PROBE_DB_PATH elsewhere"
        )
    if version == 0 and tables:
        raise StoreError(
            f"store {path} is an SQLite file of something else (tables: {', '.join(sorted(tables)[:5])}); "
            "the probe will not change it: point PROBE_DB_PATH at a new file"
        )
    if version > 0 and not tables >= OUR_TABLES:
        raise StoreError(
            f"store {path} claims schema version {version} but lacks the probe's tables; "
            "it is not a probe store: point PROBE_DB_PATH at a new file"
        )


def migrate(
    db: sqlite3.Connection, path: Path, write: Callable[[], AbstractContextManager[sqlite3.Connection]]
) -> None:
    """Bring the file at `path` to SCHEMA_VERSION, one version per `write()` transaction."""
    version = _user_version(db)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    check_identity(path, version, tables)
    if version == 0 and db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        # WAL persists in the file; switch once, at creation, before any other user.
        db.execute("PRAGMA journal_mode=WAL")
    while version < SCHEMA_VERSION:
        with write() as tx:
            if _user_version(tx) == version:  # the other process may have migrated meanwhile
                _step(tx, version + 1)
        version = _user_version(db)


def _user_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def _step(db: sqlite3.Connection, to: int) -> None:
    """One migration, inside the caller's transaction: its SQL, its Python part, its version mark."""
    for statement in _MIGRATIONS.get(to, "").split(";"):
        if statement.strip():
            db.execute(statement)
    if to in _PYTHON_MIGRATIONS:
        _PYTHON_MIGRATIONS[to](db)
    db.execute(f"PRAGMA user_version={to}")
