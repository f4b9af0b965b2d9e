"""The listener's judgements: what never arrived in time (lost or unobserved), and what is still awaited.

Why in SQL: the overdue events of every dataset are judged in one transaction (an UPDATE that
touches only events still open), so each is judged exactly once, and its failure is kept in that
same transaction (failures.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from shared.store.connection import Connection
from shared.store.failures import keep_failure
from shared.store.records import OPEN_STATES, EventState, FailureKind, PostState


class Judging(Connection):
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
                keep_failure(db, app_id, dataset, seqno, sent_at, FailureKind(state), now, None)
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
        rows = self._read("SELECT dataset, COUNT(*) FROM events WHERE state IN (?, ?) GROUP BY dataset", OPEN_STATES)
        return dict(rows)
