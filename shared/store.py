"""The SQLite event store shared by sender and listener: the only module with SQL.

Why a store at all: the sender and the listener are separate processes that
restart independently, and every event must be classified exactly once. So the
send record, the receipt and the final judgement live in one file, and every
change to an event is one short `BEGIN IMMEDIATE` transaction (docs/runtime.md
says why IMMEDIATE, WAL and autocommit).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024  # what a restarted WAL is cut back to
WAL_RESTART_BYTES = 2 * JOURNAL_SIZE_LIMIT  # a larger WAL is restarted by the next checkpoint


class StoreError(Exception):
    """The store file cannot be used; str() says why and what to do."""


class StoreWriteFailed(Exception):
    """A write the caller needed failed (disk full, say); already counted and logged."""


class EventState(StrEnum):
    """Where an event is in its life. Final states: post_failed, received, late, lost, unobserved."""

    PENDING = "pending"  # recorded, post outcome not known yet
    POSTED = "posted"  # accepted by the collector, awaited at the far end
    POST_FAILED = "post_failed"  # never accepted: not expected, never lost
    RECEIVED = "received"
    LATE = "late"  # first arrival after it was judged lost or unobserved
    LOST = "lost"  # missing after the loss timeout while the listener was subscribed all along
    UNOBSERVED = "unobserved"  # missing, but the probe was blind for part of the time


class PostState(StrEnum):
    """What the collector made of an event's post."""

    PENDING = "pending"  # not known yet (in progress, or the sender died meanwhile)
    OK = "ok"  # accepted
    FAILED = "failed"  # failed for good


class StoreOperation(StrEnum):
    """What a process was writing when the store failed (the `operation` label of probe_store_errors)."""

    RECORD_SEND = "record_send"
    RECORD_POST = "record_post"
    CLASSIFY = "classify"
    SUBSCRIPTION = "subscription"
    JUDGE = "judge"


class Arrival(StrEnum):
    """What one received message of ours is."""

    RECEIVED = "received"
    LATE = "late"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"
    FORGED = "forged"  # its time_sent is not the send time on record: someone else's copy


@dataclass(frozen=True)
class ArrivalResult:
    kind: Arrival
    latency: float | None = None  # seconds, clamped at 0
    clamped: bool = False  # receive time was before send time (a clock step)
    out_of_order: bool = False
    judged_as: EventState | None = None  # for LATE: what it had been judged
    copy: int = 1  # which copy of the event this was (2: its first duplicate)


@dataclass(frozen=True)
class EventRow:
    dataset: str
    seqno: int
    sent_at: float
    state: EventState
    post_state: PostState
    post_error: str | None
    latency: float | None
    receive_count: int


class FailureKind(StrEnum):
    """A failure kept longer than the events' retention (the last FAILURES_KEPT of each dataset)."""

    LOST = "lost"
    UNOBSERVED = "unobserved"
    POST_FAILED = "post_failed"
    CORRUPTED = "corrupted"  # a copy that arrived altered (its event is still classified)


@dataclass(frozen=True)
class FailureRow:
    dataset: str
    seqno: int
    sent_at: float
    kind: FailureKind
    at: float  # when it was found out
    detail: str | None  # the post's error reason, or what differed in an altered copy
    state: EventState | None  # the event's state now (a lost one may have arrived late); None once pruned


# Failures outlive the retention, as blackbox_exporter keeps its failed probes: the last this many
# of each dataset, trimmed as they come, so the table stays small whatever the traffic.
FAILURES_KEPT = 50
FAILURE_DETAIL_MAX = 300

_EVENT_COLUMNS = "dataset, seqno, sent_at, state, post_state, post_error, latency, receive_count"


def _event_row(row: tuple) -> EventRow:
    dataset, seqno, sent_at, state, post_state, post_error, latency, receive_count = row
    return EventRow(
        dataset, seqno, sent_at, EventState(state), PostState(post_state), post_error, latency, receive_count
    )


SCHEMA_VERSION = 5
OUR_TABLES = frozenset({"meta", "events", "subscriptions"})
# time_sent carries microseconds; the send time on record is a float of the same instant.
SENT_AT_TOLERANCE = 0.001

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
_KEY = "mac_key"
_PYTHON_MIGRATIONS = {
    5: lambda db: db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (_KEY, event_key_hex())),
}


def boot_id() -> str:
    """This boot of the machine: monotonic times compare only within one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: no boot id; monotonic times are then kept for the process's life only
        return f"pid-{os.getpid()}"


def event_key_hex() -> str:
    return secrets.token_hex(32)


_OPEN_STATES = (EventState.PENDING, EventState.POSTED)
_FINAL_STATES = tuple(s for s in EventState if s not in _OPEN_STATES)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


# The files SQLite and the stack keep beside the store. SQLite opens its own with O_NOFOLLOW;
# the stack's lock and run-directory record are opened so too (open_companion), and every one
# must be a plain file of ours.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal", ".lock", ".rundir")


def directory_problem(mode: int, owner: int, uid: int) -> str | None:
    """Why a store's directory is unsafe (others could plant or swap its files there), or None.

    Others may not write to it, unless it is sticky (as /tmp is): there they can add names but
    never remove or replace ours, and the files found there are checked one by one.
    """
    if owner not in (uid, 0):
        return "belongs to another user"
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return f"is writable by other users (mode {stat.S_IMODE(mode):o}, not sticky)"
    return None


def file_problem(info: os.stat_result, uid: int) -> str | None:
    """Why an existing store file or companion cannot be trusted (a link, another's, hard-linked), or None."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != uid:
        return "belongs to another user"
    if info.st_nlink != 1:
        return "has other hard links"
    return None


def make_store_dir(directory: Path) -> None:
    """Create the store's directory writable by us alone, whatever the umask (002 would make it
    group-writable, and then refused by check_store_path)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)


def check_store_path(path: Path) -> Path:
    """Refuse a store whose directory others can write, or whose companions are not plain files of ours;
    returns where the store's file is (the target of a link of ours).

    A planted `-wal`, `-shm` or `.lock` link would otherwise make the stack write through it
    into a file of the planter's choosing (root's files, when root runs the probe).
    """
    uid = os.geteuid()
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        link = None
    if link is not None and stat.S_ISLNK(link.st_mode):
        # A store reached through a link of ours is allowed (SQLite follows it too): its files
        # are then the target's, beside the target. A link of another user's is a plant.
        if link.st_uid != uid:
            raise StoreError(f"{path} is a symbolic link of another user; the probe will not open it")
        path = path.resolve()
    directory = path.parent
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return path
    problem = directory_problem(info.st_mode, info.st_uid, uid)
    if problem:
        raise StoreError(
            f"the store's directory {directory} {problem}: others could plant files the probe writes through; "
            "use a directory only you can write"
        )
    for name in ("", *COMPANION_SUFFIXES):
        companion = path.with_name(path.name + name)
        try:
            problem = file_problem(os.lstat(companion), uid)
        except FileNotFoundError:
            continue
        if problem:
            raise StoreError(f"{companion} {problem}; the probe will not open it: remove it, or use another store")
    return path


def open_companion(path: Path) -> int:
    """Open (creating) a file beside the store for writing, never through a link, and only a plain file of ours."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    problem = file_problem(os.fstat(fd), os.geteuid())
    if problem:
        os.close(fd)
        raise StoreError(f"{path} {problem}; the probe will not write to it: remove it, or use another PROBE_DB_PATH")
    return fd


def _open_checked(path: Path) -> tuple[int, int]:
    """The identity of the store's file at `path` (check_store_path's answer), created if new;
    refused if what is there is no longer a plain file of ours.

    SQLite follows a link at the store's own name, so a link planted after check_store_path (in a
    sticky directory, where anyone may add names) would have had it create, or fill, a file of the
    planter's choosing. So a new store's file is created here, private, never through a link; an
    existing one is checked again as it is now. Once the file is ours, no one else can swap it.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        info = os.lstat(path)
        problem = file_problem(info, os.geteuid())
        if problem:
            raise StoreError(f"store {path} {problem}; the probe will not open it") from None
        _identify(path)
        return info.st_dev, info.st_ino
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    return info.st_dev, info.st_ino


def _identify(path: Path) -> None:
    """Refuse a file that is not a probe store before anything writes to it.

    Read-only: an open for writing would already change a foreign file (its WAL is checkpointed
    into it and deleted when the connection closes). A file the probe cannot read this way is
    left to the writable open, which says what is wrong.
    """
    if path.stat().st_size == 0:
        raise StoreError(
            f"store {path} is an empty file: the probe never leaves one so (it creates its stores itself), "
            "so this one is someone else's; remove it or point PROBE_DB_PATH at a new file"
        )
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return
        raise StoreError(
            f"store {path} cannot be opened ({exc}); check PROBE_DB_PATH points at a "
            "probe store on local disk, or move the file aside"
        ) from None
    finally:
        db.close()
    _check_identity(path, version, tables)


def _check_identity(path: Path, version: int, tables: set[str]) -> None:
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


class Store:
    """One connection to the shared file; safe to use from several threads of a process."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        """Open the store; with create=False a missing file is an error, never a new store.

        Only `probe run` creates the store: a program restarted after the file was
        deleted must not start a new one with a new app_id (its own events would then
        count as another instance's).
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        if not create and not self.path.exists():
            raise StoreError(
                f"store {self.path} is missing: it was deleted or moved after the stack started; "
                "restart the stack (probe run creates it), or restore the file"
            )
        try:
            make_store_dir(self.path.parent)
            checked = _open_checked(check_store_path(self.path))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            if _file_identity(self.path) != checked:
                self._db.close()
                raise StoreError(f"store {self.path} was replaced while it was being opened; the probe will not use it")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            # No checkpoint inside a commit: that would stall the sender's schedule for an fsync.
            # The listener checkpoints from its judge thread instead (checkpoint()).
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                self._db.close()
                raise StoreError(
                    f"store {self.path} failed its integrity check ({check}); "
                    "move it aside (VACUUM INTO a copy for analysis) and restart to begin a new one"
                )
            self._migrate()
            self._same_boot()
            self._private()
            self._identity = _file_identity(self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"store {self.path} cannot be opened ({exc}); check PROBE_DB_PATH points at a "
                "probe store on local disk, or move the file aside"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def vanished(self) -> str | None:
        """Why the file at the store's path is no longer the one opened (deleted, replaced), or None.

        SQLite keeps writing to the open file even after it was deleted or renamed, so
        without this check a running stack would go on counting into a file nobody sees.
        """
        now = _file_identity(self.path)
        if now is None:
            return f"store {self.path} was deleted while the stack runs"
        if now != self._identity:
            return f"store {self.path} was replaced by another file while the stack runs"
        return None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; IMMEDIATE takes the write lock up front."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        _check_identity(self.path, version, tables)
        if version == 0 and self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            # WAL persists in the file; switch once, at creation, before any other user.
            self._db.execute("PRAGMA journal_mode=WAL")
        while version < SCHEMA_VERSION:
            with self._write() as db:
                current = db.execute("PRAGMA user_version").fetchone()[0]
                if current == version:  # the other process may have migrated meanwhile
                    for statement in _MIGRATIONS.get(version + 1, "").split(";"):
                        if statement.strip():
                            db.execute(statement)
                    if version + 1 in _PYTHON_MIGRATIONS:
                        _PYTHON_MIGRATIONS[version + 1](db)
                    db.execute(f"PRAGMA user_version={version + 1}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]

    def _same_boot(self) -> None:
        """Monotonic times of another boot mean nothing in this one: forget them (once per boot)."""
        boot = boot_id()
        if self._read("SELECT value FROM meta WHERE key = 'boot_id'") == [(boot,)]:
            return
        with self._write() as db:
            if db.execute("SELECT value FROM meta WHERE key = 'boot_id'").fetchone() == (boot,):
                return  # the other process did it meanwhile
            db.execute("UPDATE events SET sent_mono = NULL WHERE sent_mono IS NOT NULL")
            db.execute(
                """UPDATE subscriptions SET connected_mono = NULL, last_seen_mono = NULL, disconnected_mono = NULL
                   WHERE connected_mono IS NOT NULL"""
            )
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('boot_id', ?)", (boot,))

    def _private(self) -> None:
        """The file holds the instance's key: readable by its owner only (-wal and -shm too,
        which SQLite creates with the database's mode)."""
        for suffix in ("", "-wal", "-shm"):
            path = self.path.with_name(self.path.name + suffix)
            try:
                if path.stat().st_mode & 0o077 and path.stat().st_uid == os.geteuid():
                    path.chmod(0o600)
            except OSError:  # not ours to change, or gone: the key is as safe as the directory
                pass

    def checkpoint(self) -> None:
        """Copy the WAL back into the database; restart it once it outgrows its limit.

        PASSIVE never blocks a writer, but under steady writes from two processes it never
        finds the moment in which the WAL could start over either (checkpoint starvation):
        `make soak` saw it reach 590 MB at 100 ev/s, and every read slowed down with it.
        Past WAL_RESTART_BYTES a TRUNCATE checkpoint waits (within the busy timeout) for
        that moment and holds new writers for it: one short stall, instead of growth.
        """
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            wal = self.path.with_name(self.path.name + "-wal")
            try:
                size = wal.stat().st_size
            except FileNotFoundError:
                return
            if size > WAL_RESTART_BYTES:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- identity ----

    def app_id(self) -> str:
        """This instance's app_id: created once, then reused by both processes forever."""
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key='app_id'").fetchone()
            if row:
                return row[0]
            value = secrets.token_hex(4)
            db.execute("INSERT INTO meta (key, value) VALUES ('app_id', ?)", (value,))
            return value

    def event_key(self) -> bytes:
        """The secret key that seals this instance's events (schema 5 creates it). Never sent,
        logged or shown: whoever holds it can make events the probe takes for its own."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (_KEY,))
        if not rows:
            raise StoreError(f"store {self.path} has no event key; it is not a probe store of schema 5")
        return bytes.fromhex(rows[0][0])

    # ---- sender side ----

    def record_send(
        self, app_id: str, dataset: str, version: str, sent_at: float, sent_mono: float | None = None
    ) -> int:
        """Allocate the dataset's next seqno and record the event before it is posted (with the
        monotonic time of its send, taken with `sent_at`, when the caller has it)."""
        key = f"next_seqno:{dataset}"
        with self._write() as db:
            # One statement for the counter (it is on every event's path): take the next, move it on.
            row = db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ? RETURNING value", (key,)
            ).fetchone()
            if row is None:
                seqno = 1
                db.execute("INSERT INTO meta (key, value) VALUES (?, '2')", (key,))
            else:
                seqno = int(row[0]) - 1
            db.execute(
                """INSERT INTO events (app_id, seqno, dataset, version, sent_at, sent_mono, post_state, state)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (app_id, seqno, dataset, version, sent_at, sent_mono, PostState.PENDING, EventState.PENDING),
            )
            return seqno

    def record_post(self, app_id: str, dataset: str, seqno: int, ok: bool, error: str | None, at: float) -> None:
        """Store a post's outcome; an event already received keeps its state."""
        with self._write() as db:
            db.execute(
                """UPDATE events SET post_state = :post_state, post_error = :error, posted_at = :at,
                          state = CASE WHEN state = :pending THEN :state ELSE state END
                   WHERE app_id = :app_id AND dataset = :dataset AND seqno = :seqno""",
                {
                    "dataset": dataset,
                    "post_state": PostState.OK if ok else PostState.FAILED,
                    "error": error,
                    "at": at,
                    "pending": EventState.PENDING,
                    "state": EventState.POSTED if ok else EventState.POST_FAILED,
                    "app_id": app_id,
                    "seqno": seqno,
                },
            )
            if not ok:
                row = db.execute(
                    "SELECT sent_at FROM events WHERE app_id = ? AND dataset = ? AND seqno = ?",
                    (app_id, dataset, seqno),
                ).fetchone()
                if row is not None:
                    _keep_failure(db, app_id, dataset, seqno, row[0], FailureKind.POST_FAILED, at, error)

    def record_fail_out(self, at: float) -> int:
        """Note that the sender gave up after too many failed posts; returns how many times in a row."""
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'fail_outs'").fetchone()
            count = (int(row[0].split()[0]) if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('fail_outs', ?)", (f"{count} {at}",))
            return count

    def fail_outs(self) -> tuple[int, float]:
        """(consecutive fail-outs, time of the last one); (0, 0.0) after a successful post."""
        rows = self._read("SELECT value FROM meta WHERE key = 'fail_outs'")
        if not rows:
            return 0, 0.0
        count, at = rows[0][0].split()
        return int(count), float(at)

    def clear_fail_outs(self) -> None:
        with self._write() as db:
            db.execute("DELETE FROM meta WHERE key = 'fail_outs'")

    def last_post(self, dataset: str) -> tuple[float | None, float | None]:
        """(post time of the dataset's newest successful event, and of its newest failed one).

        By send order, walking the (dataset, sent_at) index back from the newest event: /readyz
        asks at every probe, and a scan of a week of events per dataset would not do.
        """
        sql = """SELECT posted_at FROM events INDEXED BY events_sent
                 WHERE dataset = ? AND post_state = ? ORDER BY sent_at DESC LIMIT 1"""
        ok = self._read(sql, (dataset, PostState.OK))
        failed = self._read(sql, (dataset, PostState.FAILED))
        return (ok[0][0] if ok else None), (failed[0][0] if failed else None)

    # ---- listener side: subscriptions ----

    def subscription_opened(self, dataset: str, at: float, mono: float | None = None) -> int:
        with self._write() as db:
            cur = db.execute(
                """INSERT INTO subscriptions (dataset, connected_at, last_seen, connected_mono, last_seen_mono)
                   VALUES (?, ?, ?, ?, ?)""",
                (dataset, at, at, mono, mono),
            )
            return int(cur.lastrowid)

    def subscription_alive(self, sub_id: int, at: float, mono: float | None = None) -> None:
        with self._write() as db:
            db.execute(
                """UPDATE subscriptions SET last_seen = ?, last_seen_mono = COALESCE(?, last_seen_mono)
                   WHERE id = ? AND disconnected_at IS NULL""",
                (at, mono, sub_id),
            )

    def subscription_closed(self, sub_id: int, at: float, mono: float | None = None) -> None:
        with self._write() as db:
            db.execute(
                """UPDATE subscriptions SET disconnected_at = ?, last_seen = ?,
                          disconnected_mono = COALESCE(?, last_seen_mono), last_seen_mono = COALESCE(?, last_seen_mono)
                   WHERE id = ? AND disconnected_at IS NULL""",
                (at, at, mono, mono, sub_id),
            )

    def close_dangling_subscriptions(self, dataset: str | None = None) -> int:
        """A listener killed while subscribed left its interval open: end it at its last heartbeat
        (of one dataset, or of all at the listener's start).

        Claiming more would blame the pipeline for events sent while nobody listened.
        """
        with self._write() as db:
            cur = db.execute(
                """UPDATE subscriptions SET disconnected_at = last_seen, disconnected_mono = last_seen_mono
                   WHERE disconnected_at IS NULL AND (:dataset IS NULL OR dataset = :dataset)""",
                {"dataset": dataset},
            )
            return cur.rowcount

    def subscribed_since(self, dataset: str, max_age: float, now: float, now_mono: float | None = None) -> float | None:
        """Start of the dataset's open subscription whose heartbeat is fresher than max_age, else None.

        Fresh by the monotonic clock when both sides have it: a wall clock stepped back must not
        make a stale heartbeat look fresh (and /readyz say ready on a dead listener).
        """
        rows = self._read(
            """SELECT MIN(connected_at) FROM subscriptions
               WHERE dataset = :dataset AND disconnected_at IS NULL AND CASE
                   WHEN :now_mono IS NOT NULL AND last_seen_mono IS NOT NULL THEN last_seen_mono >= :now_mono - :age
                   ELSE last_seen >= :now - :age END""",
            {"dataset": dataset, "now": now, "now_mono": now_mono, "age": max_age},
        )
        return rows[0][0]

    # ---- listener side: arrivals and judgements ----

    def classify_arrival(
        self,
        app_id: str,
        dataset: str,
        seqno: int,
        received_at: float,
        time_sent: float | None = None,
        received_mono: float | None = None,
    ) -> ArrivalResult:
        """Classify one arrival of our own event, exactly once, in one transaction.

        A copy whose `time_sent` is not the send time on record was not made by us (anyone who
        can post to the dataset can forge our app_id and seqno): it changes nothing.
        """
        # A copy that changes nothing (unknown, forged) is answered from a read: a flood of them
        # must never take the write lock that the sender and every other dataset need.
        rows = self._read(
            "SELECT sent_at FROM events WHERE app_id = ? AND dataset = ? AND seqno = ?", (app_id, dataset, seqno)
        )
        if not rows:
            return ArrivalResult(Arrival.UNKNOWN)
        if time_sent is not None and abs(time_sent - rows[0][0]) > SENT_AT_TOLERANCE:
            return ArrivalResult(Arrival.FORGED)
        with self._write() as db:
            row = db.execute(
                """SELECT sent_at, state, receive_count, sent_mono FROM events
                   WHERE app_id = ? AND dataset = ? AND seqno = ?""",
                (app_id, dataset, seqno),
            ).fetchone()
            if row is None:  # pruned meanwhile
                return ArrivalResult(Arrival.UNKNOWN)
            sent_at, state, count, sent_mono = row
            # On the monotonic clock when both ends have it: a wall-clock step is no latency.
            if sent_mono is not None and received_mono is not None:
                latency = received_mono - sent_mono
            else:
                latency = received_at - sent_at
            clamped = latency < 0
            latency = max(0.0, latency)
            if count > 0:
                db.execute(
                    """UPDATE events SET receive_count = receive_count + 1
                       WHERE app_id = ? AND dataset = ? AND seqno = ?""",
                    (app_id, dataset, seqno),
                )
                return ArrivalResult(Arrival.DUPLICATE, latency, clamped, copy=count + 1)
            late = state in (EventState.LOST, EventState.UNOBSERVED)
            new_state = EventState.LATE if late else EventState.RECEIVED
            key = f"max_received_seqno:{app_id}:{dataset}"
            newest = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            out_of_order = newest is not None and seqno < int(newest[0])
            if newest is None or seqno > int(newest[0]):
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(seqno)))
            db.execute(
                """UPDATE events SET state = ?, received_at = ?, latency = ?, receive_count = 1
                   WHERE app_id = ? AND dataset = ? AND seqno = ?""",
                (new_state, received_at, latency, app_id, dataset, seqno),
            )
            return ArrivalResult(
                Arrival.LATE if late else Arrival.RECEIVED,
                latency,
                clamped,
                out_of_order,
                EventState(state) if late else None,
            )

    def judge_overdue(
        self,
        now: float,
        timeouts: Mapping[str, float],
        default_timeout: float,
        now_mono: float | None = None,
        fresh: float | None = None,
    ) -> dict[str, dict[EventState, int]]:
        """Close every event still open its dataset's timeout after its send: lost or unobserved.

        Lost only when the post was accepted and one subscription *to the event's dataset*
        covered the whole window from send to judgement; otherwise the probe was blind (or
        never knew whether the post went through) and the pipeline is not blamed. Events of
        datasets no longer configured are judged after `default_timeout`. One transaction.
        Returns the counts by dataset (datasets with nothing judged are left out).

        With `now_mono`, events and intervals that have monotonic times are judged on them: a
        step of the wall clock (+120 s, say) neither makes events in flight overdue nor (-240 s)
        an interval begin after the events it covered. An open interval covers until now only
        while its heartbeat is fresher than `fresh`; else until its last heartbeat (a listener
        stuck somewhere claims nothing after its last proof of life).
        """
        mono = "(events.sent_mono IS NOT NULL AND :now_mono IS NOT NULL)"
        sql = f"""UPDATE events SET judged_at = :now, state = CASE
                       WHEN post_state = :ok AND EXISTS (
                           SELECT 1 FROM subscriptions s
                           WHERE s.dataset = events.dataset AND CASE
                             WHEN {mono} AND s.connected_mono IS NOT NULL THEN
                               s.connected_mono <= events.sent_mono
                               AND COALESCE(s.disconnected_mono, CASE WHEN s.last_seen_mono >= :now_mono - :fresh
                                   THEN :now_mono ELSE s.last_seen_mono END) >= events.sent_mono + :timeout
                             WHEN {mono} THEN 0
                             ELSE s.connected_at <= events.sent_at
                               AND COALESCE(s.disconnected_at, CASE WHEN s.last_seen >= :now - :fresh
                                   THEN :now ELSE s.last_seen END) >= events.sent_at + :timeout END)
                       THEN :lost ELSE :unobserved END
                   WHERE state IN (:pending, :posted) AND {{which}} AND CASE
                       WHEN {mono} THEN events.sent_mono <= :now_mono - :timeout
                       ELSE events.sent_at <= :now - :timeout END
                   RETURNING app_id, dataset, seqno, sent_at, state"""
        params = {
            "now": now,
            "now_mono": now_mono,
            "fresh": 1e18 if fresh is None else fresh,
            "ok": PostState.OK,
            "lost": EventState.LOST,
            "unobserved": EventState.UNOBSERVED,
            "pending": EventState.PENDING,
            "posted": EventState.POSTED,
        }
        rows: list[tuple[str, str]] = []
        with self._write() as db:
            for dataset, timeout in timeouts.items():
                query = sql.format(which="dataset = :dataset")
                rows += db.execute(query, {**params, "timeout": timeout, "dataset": dataset}).fetchall()
            rows += db.execute(
                sql.format(which="dataset NOT IN (SELECT value FROM json_each(:names))"),
                {**params, "timeout": default_timeout, "names": json.dumps(list(timeouts))},
            ).fetchall()
            for app_id, dataset, seqno, sent_at, state in rows:
                _keep_failure(db, app_id, dataset, seqno, sent_at, FailureKind(state), now, None)
        counts: dict[str, dict[EventState, int]] = {}
        for _, dataset, _, _, state in rows:
            per = counts.setdefault(dataset, {EventState.LOST: 0, EventState.UNOBSERVED: 0})
            per[EventState(state)] += 1
        return counts

    def missing_share(self, dataset: str, since: float, until: float) -> tuple[int, int]:
        """(missing, accepted) among the events sent in [since, until) that the collector accepted.

        Missing means not arrived (yet): neither received nor late. Posts that failed are
        left out, as they were never expected at the far end.
        """
        row = self._read(
            """SELECT COALESCE(SUM(state NOT IN (?, ?)), 0), COUNT(*) FROM events
               WHERE dataset = ? AND sent_at >= ? AND sent_at < ? AND post_state = ?""",
            (EventState.RECEIVED, EventState.LATE, dataset, since, until, PostState.OK),
        )[0]
        return int(row[0]), int(row[1])

    def in_flight(self) -> dict[str, int]:
        """Events posted (or being posted) and neither received nor judged yet, by dataset."""
        rows = self._read("SELECT dataset, COUNT(*) FROM events WHERE state IN (?, ?) GROUP BY dataset", _OPEN_STATES)
        return dict(rows)

    def prune(self, before: float, batch: int = 500) -> int:
        """Delete judged events and closed subscriptions older than `before`, in small batches."""
        removed = 0
        placeholders = ",".join("?" for _ in _FINAL_STATES)
        while True:
            with self._write() as db:
                cur = db.execute(
                    f"""DELETE FROM events WHERE rowid IN (
                            SELECT rowid FROM events
                            WHERE sent_at < ? AND state IN ({placeholders}) LIMIT ?)""",
                    (before, *_FINAL_STATES, batch),
                )
                db.execute(
                    "DELETE FROM subscriptions WHERE disconnected_at IS NOT NULL AND disconnected_at < ?",
                    (before,),
                )
            removed += cur.rowcount
            if cur.rowcount < batch:
                return removed

    # ---- failures kept longer than the retention ----

    def record_corrupted(self, app_id: str, dataset: str, seqno: int, detail: str, at: float) -> None:
        """Keep an altered copy among the dataset's failures, with what differed (network content:
        bounded here, escaped wherever it is shown)."""
        with self._write() as db:
            row = db.execute(
                "SELECT sent_at FROM events WHERE app_id = ? AND dataset = ? AND seqno = ?", (app_id, dataset, seqno)
            ).fetchone()
            if row is not None:
                _keep_failure(db, app_id, dataset, seqno, row[0], FailureKind.CORRUPTED, at, detail)

    def failures(self, dataset: str, limit: int = FAILURES_KEPT) -> list[FailureRow]:
        """The dataset's kept failures, newest first, with their events' states now (if not pruned)."""
        rows = self._read(
            """SELECT f.dataset, f.seqno, f.sent_at, f.kind, f.at, f.detail, e.state FROM failures f
               LEFT JOIN events e ON e.app_id = f.app_id AND e.dataset = f.dataset AND e.seqno = f.seqno
               WHERE f.dataset = ? ORDER BY f.id DESC LIMIT ?""",
            (dataset, limit),
        )
        return [
            FailureRow(d, n, sent, FailureKind(kind), at, detail, EventState(state) if state else None)
            for d, n, sent, kind, at, detail, state in rows
        ]

    # ---- the status page: one dataset's last hour ----

    def latency_quantiles(self, dataset: str, since: float, step: float) -> list[tuple[float, float, float]]:
        """(bucket start, p50, p99) of the end-to-end latency of events sent since `since`, by
        buckets of `step` seconds: nearest-rank percentiles, computed in SQLite so that only a few
        dozen rows come back however many events the hour had."""
        rows = self._read(
            """WITH ranked AS (
                   SELECT CAST((sent_at - :since) / :step AS INTEGER) AS bucket, latency,
                          ROW_NUMBER() OVER (PARTITION BY CAST((sent_at - :since) / :step AS INTEGER)
                                             ORDER BY latency) AS rank,
                          COUNT(*) OVER (PARTITION BY CAST((sent_at - :since) / :step AS INTEGER)) AS n
                   FROM events INDEXED BY events_sent
                   WHERE dataset = :dataset AND sent_at >= :since AND latency IS NOT NULL)
               SELECT bucket,
                      MAX(CASE WHEN rank = MAX(1, CAST(0.50 * n + 0.9999999 AS INTEGER)) THEN latency END),
                      MAX(CASE WHEN rank = MAX(1, CAST(0.99 * n + 0.9999999 AS INTEGER)) THEN latency END)
               FROM ranked GROUP BY bucket ORDER BY bucket""",
            {"dataset": dataset, "since": since, "step": step},
        )
        return [(since + bucket * step, p50, p99) for bucket, p50, p99 in rows]

    def first_sent_since(self, dataset: str, since: float) -> float | None:
        """Send time of the dataset's oldest event sent since `since` (a young stack's graphs span its life)."""
        rows = self._read(
            "SELECT MIN(sent_at) FROM events INDEXED BY events_sent WHERE dataset = ? AND sent_at >= ?",
            (dataset, since),
        )
        return rows[0][0]

    def window_counts(self, dataset: str, since: float) -> dict[str, int]:
        """Events sent since `since` by state, for the loss share of the last hour."""
        rows = self._read(
            """SELECT state, COUNT(*) FROM events INDEXED BY events_sent
               WHERE dataset = ? AND sent_at >= ? GROUP BY state""",
            (dataset, since),
        )
        return dict(rows)

    def last_arrival(self, dataset: str) -> float | None:
        """Receive time of the newest event received, among the newest hundred sent (an index walk)."""
        rows = self._read(
            """SELECT MAX(received_at) FROM (SELECT received_at FROM events INDEXED BY events_sent
               WHERE dataset = ? ORDER BY sent_at DESC LIMIT 100)""",
            (dataset,),
        )
        return rows[0][0]

    def subscription_intervals(self, dataset: str, since: float) -> list[tuple[float, float, bool]]:
        """(start, end, open) of the dataset's subscriptions that reached past `since`; an open one
        ends at its last heartbeat."""
        rows = self._read(
            """SELECT connected_at, COALESCE(disconnected_at, last_seen), disconnected_at IS NULL
               FROM subscriptions WHERE dataset = ? AND COALESCE(disconnected_at, last_seen) >= ?
               ORDER BY connected_at""",
            (dataset, since),
        )
        return [(start, end, bool(is_open)) for start, end, is_open in rows]

    # ---- notes: what a process found out that /readyz should say ----

    def set_note(self, key: str, text: str | None) -> None:
        """Record (or, with None, clear) a problem of `key` (sender, listener) for /readyz to show."""
        with self._write() as db:
            if text is None:
                db.execute("DELETE FROM meta WHERE key = ?", (f"note:{key}",))
            else:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"note:{key}", text))

    def note(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (f"note:{key}",))
        return rows[0][0] if rows else None

    # ---- operators ----

    def recent_events(self, limit: int, dataset: str | None = None) -> list[EventRow]:
        if dataset is not None:  # an index walk back from the dataset's newest (the page asks per dataset)
            rows = self._read(
                f"""SELECT {_EVENT_COLUMNS} FROM events INDEXED BY events_sent WHERE dataset = ?
                    ORDER BY sent_at DESC LIMIT ?""",
                (dataset, limit),
            )
            return [_event_row(row) for row in rows]
        rows = self._read(
            f"""SELECT {_EVENT_COLUMNS} FROM events WHERE (:dataset IS NULL OR dataset = :dataset)
                ORDER BY sent_at DESC LIMIT :limit""",
            {"dataset": dataset, "limit": limit},
        )
        return [_event_row(row) for row in rows]

    def events(self, app_id: str, dataset: str | None = None) -> list[EventRow]:
        """Every event of an instance (of one dataset, or all), by dataset and seqno (tests, audits)."""
        rows = self._read(
            f"""SELECT {_EVENT_COLUMNS} FROM events
                WHERE app_id = :app_id AND (:dataset IS NULL OR dataset = :dataset) ORDER BY dataset, seqno""",
            {"app_id": app_id, "dataset": dataset},
        )
        return [_event_row(row) for row in rows]

    def totals(self) -> dict[str, dict[str, int]]:
        """Events by state, and copies received more than once, for each dataset in the store."""
        out: dict[str, dict[str, int]] = {}

        def of(dataset: str) -> dict[str, int]:
            return out.setdefault(dataset, {**{s.value: 0 for s in EventState}, "duplicates": 0})

        for dataset, state, n in self._read("SELECT dataset, state, COUNT(*) FROM events GROUP BY dataset, state"):
            of(dataset)[state] = n
        for dataset, n in self._read(
            "SELECT dataset, SUM(receive_count - 1) FROM events WHERE receive_count > 1 GROUP BY dataset"
        ):
            of(dataset)["duplicates"] = n
        return dict(sorted(out.items()))


def _keep_failure(
    db: sqlite3.Connection,
    app_id: str,
    dataset: str,
    seqno: int,
    sent_at: float,
    kind: FailureKind,
    at: float,
    detail: str | None,
) -> None:
    """Add a failure and trim the dataset's to the newest FAILURES_KEPT, inside the caller's transaction."""
    if detail is not None:
        detail = detail[:FAILURE_DETAIL_MAX]
    db.execute(
        "INSERT INTO failures (app_id, dataset, seqno, sent_at, kind, at, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (app_id, dataset, seqno, sent_at, kind, at, detail),
    )
    db.execute(
        """DELETE FROM failures WHERE dataset = :dataset AND id <= (
               SELECT id FROM failures WHERE dataset = :dataset ORDER BY id DESC LIMIT 1 OFFSET :kept)""",
        {"dataset": dataset, "kept": FAILURES_KEPT},
    )


class StoreReader(Store):
    """A read-only connection for pages: every query is cut off after `query_seconds`, and a
    reader that cannot get the connection within that time gives up, so a slow or locked
    store delays the page by a bounded time and never anything else (it writes nothing,
    takes no write lock, and runs no integrity check or migration)."""

    def __init__(self, path: str | Path, query_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._query_seconds = query_seconds
        if not self.path.exists():
            raise StoreError(f"store {self.path} does not exist (yet)")
        try:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=0)
            self._db.execute(f"PRAGMA busy_timeout={round(query_seconds * 1000)}")
            self._db.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path} cannot be read ({exc})") from None
        self._identity = _file_identity(self.path)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        raise StoreError("a StoreReader does not write")
        yield self._db  # pragma: no cover

    def _read(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        if not self._lock.acquire(timeout=self._query_seconds):
            raise sqlite3.OperationalError("the store reader is busy with another page")
        try:
            deadline = time.monotonic() + self._query_seconds
            self._db.set_progress_handler(lambda: time.monotonic() > deadline, 2000)
            try:
                return self._db.execute(sql, params).fetchall()
            finally:
                self._db.set_progress_handler(None, 0)
        finally:
            self._lock.release()

    def app_id(self) -> str:
        rows = self._read("SELECT value FROM meta WHERE key = 'app_id'")
        return rows[0][0] if rows else "-"


class Note:
    """One process's problem on record for /readyz (a wrong dataset, say), written when it begins
    and when it ends rather than at every failed post or refused handshake. Safe across threads."""

    def __init__(self, store: Store, key: str) -> None:
        self._store = store
        self._key = key
        self._lock = threading.Lock()
        self._on: str | None = None  # the problem on record

    def record(self, text: str) -> bool:
        """Put the problem on record; True only for the first call of a streak, or when the problem
        changed (a host that stopped resolving now refuses, say): log it then."""
        with self._lock:
            if self._on == text:
                return False
            self._on = text
        self._store.set_note(self._key, text)
        return True

    def clear(self) -> bool:
        """The problem ended; True when there was one on record."""
        with self._lock:
            if self._on is None:
                return False
            self._on = None
        self._store.set_note(self._key, None)
        return True
