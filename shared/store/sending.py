"""The sender's writes: an event on record before it is posted, the post's outcome, the fail-outs.

Why before the post: an event the collector accepted must be known to the listener, which may
receive it before the post's answer comes back; so the send is recorded first and its seqno
allocated in the same transaction.
"""

from __future__ import annotations

from shared.store.connection import Connection
from shared.store.failures import keep_failure_of_event
from shared.store.records import EventState, FailureKind, PostState


class SenderWrites(Connection):
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
                keep_failure_of_event(db, app_id, dataset, seqno, FailureKind.POST_FAILED, at, error)

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
