"""A read-only store for pages, whose every query is bounded in time.

Why: the status page reads a store that the stack writes; a slow disk or a
held lock must delay a page by a bounded time, and never make the page a writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.store.files import file_identity
from shared.store.records import StoreError
from shared.store.store import Store


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
        self._identity = file_identity(self.path)

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
