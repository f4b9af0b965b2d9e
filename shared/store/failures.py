"""The failures kept longer than the events' retention, for the status page's history.

Failures outlive the retention, as blackbox_exporter keeps its failed probes: the last
FAILURES_KEPT of each dataset, trimmed as they come, so the table stays small whatever the
traffic, and in a table of their own so that pruning the events never reaches them.
"""

from __future__ import annotations

import sqlite3

from shared.store.connection import Connection
from shared.store.records import EventState, FailureKind, FailureRow

FAILURES_KEPT = 50
FAILURE_DETAIL_MAX = 300


def keep_failure(
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


def keep_failure_of_event(
    db: sqlite3.Connection, app_id: str, dataset: str, seqno: int, kind: FailureKind, at: float, detail: str | None
) -> None:
    """keep_failure for an event on record (its send time read in the caller's transaction); none if pruned."""
    row = db.execute(
        "SELECT sent_at FROM events WHERE app_id = ? AND dataset = ? AND seqno = ?", (app_id, dataset, seqno)
    ).fetchone()
    if row is not None:
        keep_failure(db, app_id, dataset, seqno, row[0], kind, at, detail)


class Failures(Connection):
    def record_corrupted(self, app_id: str, dataset: str, seqno: int, detail: str, at: float) -> None:
        """Keep an altered copy among the dataset's failures, with what differed (network content:
        bounded here, escaped wherever it is shown)."""
        with self._write() as db:
            keep_failure_of_event(db, app_id, dataset, seqno, FailureKind.CORRUPTED, at, detail)

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
