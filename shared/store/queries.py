"""The reads behind `probe status` and the status page: one dataset's last hour, the newest events, the totals.

Why the per-dataset reads name the (dataset, sent_at) index: the page asks per dataset at every
refresh, over a store that may hold a week of events, and a plan that scans them all would make
every view slow.
"""

from __future__ import annotations

from shared.store.connection import Connection
from shared.store.records import EventRow, EventState, PostState

EVENT_COLUMNS = "dataset, seqno, sent_at, state, post_state, post_error, latency, receive_count"


def event_row(row: tuple) -> EventRow:
    dataset, seqno, sent_at, state, post_state, post_error, latency, receive_count = row
    return EventRow(
        dataset, seqno, sent_at, EventState(state), PostState(post_state), post_error, latency, receive_count
    )


class StatusQueries(Connection):
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

    # ---- operators ----

    def recent_events(self, limit: int, dataset: str | None = None) -> list[EventRow]:
        if dataset is not None:  # an index walk back from the dataset's newest (the page asks per dataset)
            rows = self._read(
                f"""SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_sent WHERE dataset = ?
                    ORDER BY sent_at DESC LIMIT ?""",
                (dataset, limit),
            )
            return [event_row(row) for row in rows]
        rows = self._read(
            f"""SELECT {EVENT_COLUMNS} FROM events WHERE (:dataset IS NULL OR dataset = :dataset)
                ORDER BY sent_at DESC LIMIT :limit""",
            {"dataset": dataset, "limit": limit},
        )
        return [event_row(row) for row in rows]

    def events(self, app_id: str, dataset: str | None = None) -> list[EventRow]:
        """Every event of an instance (of one dataset, or all), by dataset and seqno (tests, audits)."""
        rows = self._read(
            f"""SELECT {EVENT_COLUMNS} FROM events
                WHERE app_id = :app_id AND (:dataset IS NULL OR dataset = :dataset) ORDER BY dataset, seqno""",
            {"app_id": app_id, "dataset": dataset},
        )
        return [event_row(row) for row in rows]

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
