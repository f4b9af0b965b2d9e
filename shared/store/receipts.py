"""The listener's receipts: each arrival of our own event classified exactly once.

Why one transaction per arrival: a restarted listener, a duplicate copy and the judge thread may
all reach the same event; the event's state, its latency, its copy count and the dataset's newest
seqno change together or not at all.
"""

from __future__ import annotations

import sqlite3

from shared.store.connection import Connection
from shared.store.records import Arrival, ArrivalResult, EventState

# time_sent carries microseconds; the send time on record is a float of the same instant.
SENT_AT_TOLERANCE = 0.001

_WHERE_EVENT = "app_id = ? AND dataset = ? AND seqno = ?"
EventId = tuple[str, str, int]  # (app_id, dataset, seqno), in _WHERE_EVENT's order


class Receipts(Connection):
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
        event = (app_id, dataset, seqno)
        # A copy that changes nothing (unknown, forged) is answered from a read: a flood of them
        # must never take the write lock that the sender and every other dataset need.
        rows = self._read(f"SELECT sent_at FROM events WHERE {_WHERE_EVENT}", event)
        if not rows:
            return ArrivalResult(Arrival.UNKNOWN)
        if time_sent is not None and abs(time_sent - rows[0][0]) > SENT_AT_TOLERANCE:
            return ArrivalResult(Arrival.FORGED)
        with self._write() as db:
            row = db.execute(
                f"""SELECT sent_at, state, receive_count, sent_mono FROM events
                   WHERE {_WHERE_EVENT}""",
                event,
            ).fetchone()
            if row is None:  # pruned meanwhile
                return ArrivalResult(Arrival.UNKNOWN)
            sent_at, state, count, sent_mono = row
            # On the monotonic clock when both ends have it: a wall-clock step is no latency.
            if sent_mono is not None and received_mono is not None:
                latency = received_mono - sent_mono
            else:
                latency = received_at - sent_at
            if count > 0:
                return _another_copy(db, event, latency, count)
            return _first_copy(db, event, state, received_at, latency)


def _another_copy(db: sqlite3.Connection, event: EventId, latency: float, count: int) -> ArrivalResult:
    """A duplicate: only counted (its event was classified by the first copy)."""
    db.execute(f"UPDATE events SET receive_count = receive_count + 1 WHERE {_WHERE_EVENT}", event)
    return ArrivalResult(Arrival.DUPLICATE, max(0.0, latency), latency < 0, copy=count + 1)


def _first_copy(
    db: sqlite3.Connection, event: EventId, state: str, received_at: float, latency: float
) -> ArrivalResult:
    """The first copy classifies its event: received, or late when it had been judged missing."""
    late = state in (EventState.LOST, EventState.UNOBSERVED)
    out_of_order = _newest_seqno(db, event)
    db.execute(
        f"""UPDATE events SET state = ?, received_at = ?, latency = ?, receive_count = 1
           WHERE {_WHERE_EVENT}""",
        (EventState.LATE if late else EventState.RECEIVED, received_at, max(0.0, latency), *event),
    )
    return ArrivalResult(
        Arrival.LATE if late else Arrival.RECEIVED,
        max(0.0, latency),
        latency < 0,
        out_of_order,
        EventState(state) if late else None,
    )


def _newest_seqno(db: sqlite3.Connection, event: EventId) -> bool:
    """Move the dataset's newest received seqno on to this event's; True when the event is older
    than one already received (out of order)."""
    app_id, dataset, seqno = event
    key = f"max_received_seqno:{app_id}:{dataset}"
    newest = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if newest is None or seqno > int(newest[0]):
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(seqno)))
    return newest is not None and seqno < int(newest[0])
