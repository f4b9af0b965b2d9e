"""Notes: what a process found out that /readyz should say (a wrong dataset, a refused handshake).

Why in the store: the metrics program answers /readyz, but the sender and the listener are the
ones that find the problem; the store is the one place all three share. Why typed keys: a key
spelled by hand by its writer and again by each reader (`probe check`, /readyz) would drift apart
without an error; so every note's key is made by note_key, from its owner and the dataset's name.
"""

from __future__ import annotations

import threading
from enum import StrEnum

from shared.store.connection import Connection


class NoteOwner(StrEnum):
    """Which process keeps a note: the first part of its key."""

    SENDER = "sender"  # a problem of the posts
    LISTENER = "listener"  # a problem of the subscription


def note_key(owner: NoteOwner, dataset: str) -> str:
    """The key of `owner`'s note about the dataset named `dataset` (kept in the store as is: never change it)."""
    return f"{owner}:{dataset}"


class Notes(Connection):
    def set_note(self, key: str, text: str | None) -> None:
        """Record (or, with None, clear) a problem of `key` (see note_key) for /readyz to show."""
        with self._write() as db:
            if text is None:
                db.execute("DELETE FROM meta WHERE key = ?", (f"note:{key}",))
            else:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"note:{key}", text))

    def note(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (f"note:{key}",))
        return rows[0][0] if rows else None


class Note:
    """One process's problem on record for /readyz (a wrong dataset, say), written when it begins
    and when it ends rather than at every failed post or refused handshake. Safe across threads."""

    def __init__(self, store: Notes, key: str) -> None:
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
