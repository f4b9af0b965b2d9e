"""One connection to the store's file: opening it safely, its pragmas, its transactions, the instance's identity.

Why one short `BEGIN IMMEDIATE` transaction per change: the sender and the listener write the
same file from separate processes, and IMMEDIATE takes the write lock up front, so neither ever
fails half-way through a change for a lock the other holds (docs/runtime.md says why IMMEDIATE,
WAL and autocommit). Every job of the store (shared/store/*.py) is a mixin on this class.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from shared.store.files import check_store_path, file_identity, make_store_dir, open_checked
from shared.store.records import StoreError
from shared.store.schema import EVENT_KEY, migrate

JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024  # what a restarted WAL is cut back to


def boot_id() -> str:
    """This boot of the machine: monotonic times compare only within one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: no boot id; monotonic times are then kept for the process's life only
        return f"pid-{os.getpid()}"


class Connection:
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
            checked = open_checked(check_store_path(self.path))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            if file_identity(self.path) != checked:
                self._db.close()
                raise StoreError(f"store {self.path} was replaced while it was being opened; the probe will not use it")
            self._set_pragmas()
            self._check_integrity()
            migrate(self._db, self.path, self._write)
            self._same_boot()
            self._private()
            self._identity = file_identity(self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"store {self.path} cannot be opened ({exc}); check PROBE_DB_PATH points at a "
                "probe store on local disk, or move the file aside"
            ) from None

    def _set_pragmas(self) -> None:
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        # No checkpoint inside a commit: that would stall the sender's schedule for an fsync.
        # The listener checkpoints from its judge thread instead (checkpoint()).
        self._db.execute("PRAGMA wal_autocheckpoint=0")

    def _check_integrity(self) -> None:
        check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            self._db.close()
            raise StoreError(
                f"store {self.path} failed its integrity check ({check}); "
                "move it aside (VACUUM INTO a copy for analysis) and restart to begin a new one"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def vanished(self) -> str | None:
        """Why the file at the store's path is no longer the one opened (deleted, replaced), or None.

        SQLite keeps writing to the open file even after it was deleted or renamed, so
        without this check a running stack would go on counting into a file nobody sees.
        """
        now = file_identity(self.path)
        if now is None:
            return f"store {self.path} was deleted while the stack runs"
        if now != self._identity:
            return f"store {self.path} was replaced by another file while the stack runs"
        return None

    def __enter__(self) -> Self:
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
        rows = self._read("SELECT value FROM meta WHERE key = ?", (EVENT_KEY,))
        if not rows:
            raise StoreError(f"store {self.path} has no event key; it is not a probe store of schema 5")
        return bytes.fromhex(rows[0][0])
