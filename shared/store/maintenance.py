"""Keeping the file small: WAL checkpoints and the pruning of old events.

Why here and not in a commit: the sender's schedule must never stall for an fsync, so SQLite's
own checkpoints are off (connection.py) and the listener's judge thread calls these instead.
"""

from __future__ import annotations

from shared.store.connection import JOURNAL_SIZE_LIMIT, Connection
from shared.store.records import FINAL_STATES

WAL_RESTART_BYTES = 2 * JOURNAL_SIZE_LIMIT  # a larger WAL is restarted by the next checkpoint


class Maintenance(Connection):
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

    def prune(self, before: float, batch: int = 500) -> int:
        """Delete judged events and closed subscriptions older than `before`, in small batches."""
        removed = 0
        placeholders = ",".join("?" for _ in FINAL_STATES)
        while True:
            with self._write() as db:
                cur = db.execute(
                    f"""DELETE FROM events WHERE rowid IN (
                            SELECT rowid FROM events
                            WHERE sent_at < ? AND state IN ({placeholders}) LIMIT ?)""",
                    (before, *FINAL_STATES, batch),
                )
                db.execute(
                    "DELETE FROM subscriptions WHERE disconnected_at IS NOT NULL AND disconnected_at < ?",
                    (before,),
                )
            removed += cur.rowcount
            if cur.rowcount < batch:
                return removed
