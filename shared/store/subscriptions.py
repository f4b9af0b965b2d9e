"""The listener's subscriptions on record: when each dataset's was open, with its last heartbeat.

Why keep them: an event missing at the far end is blamed on the pipeline (lost) only when a
subscription to its dataset covered its whole window; otherwise the probe was blind
(unobserved). So every interval is written as it opens, lives and ends (judging.py reads them).
"""

from __future__ import annotations

from shared.store.connection import Connection


class Subscriptions(Connection):
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
