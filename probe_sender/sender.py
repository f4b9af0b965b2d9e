"""One dataset's send loop: record each event, post it in the background, account for it once.

The sender process runs one of these per dataset, each on its own schedule thread, so a
dataset whose collector is slow or failing never delays another's sends.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from probe_sender.collector import Collector, PostError, PostResult
from probe_sender.fail_out import FailOut, FailOutGroup
from probe_sender.schedule import SkipReason, next_slot
from probe_sender.send_step import SendStep
from shared import event as event_mod
from shared import metrics
from shared.auth import TokenFailure, TokenResult
from shared.config import Config, Dataset
from shared.log import DatasetLog
from shared.store import Note, NoteOwner, Store, StoreOperation, note_key
from shared.tracing import NoTracer

log = logging.getLogger("sender")


class Sender:
    def __init__(
        self,
        cfg: Config,
        ds: Dataset,
        store: Store,
        collector: Collector,
        app_id: str,
        fail_outs: FailOutGroup,
        stop: threading.Event,
        tracer: NoTracer | None = None,
    ) -> None:
        self.tracer = tracer or NoTracer()
        self.cfg = cfg
        self.ds = ds
        self.store = store
        self.collector = collector
        self.app_id = app_id
        self.stop = stop
        self.fail_outs = fail_outs
        stamp = {event_mod.LOCATION_FIELD: cfg.location}
        if cfg.group:
            stamp[event_mod.GROUP_FIELD] = cfg.group
        self._step = SendStep(store, app_id, ds, collector, store.event_key(), self.tracer, stamp)
        self._note = Note(store, note_key(NoteOwner.SENDER, ds.name))  # a problem of the posts, on record for /readyz
        self._slots = threading.BoundedSemaphore(cfg.post_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=cfg.post_concurrency, thread_name_prefix=f"post-{ds.name}")
        name = ds.name
        self.log = DatasetLog(log, name)
        metrics.precreate(metrics.post_errors, name, PostError)
        metrics.precreate(metrics.token_requests, name, TokenResult)
        metrics.precreate(metrics.token_request_errors, name, TokenFailure)
        metrics.precreate(metrics.skipped_slots, name, SkipReason)
        metrics.fail_outs.labels(name)
        metrics.precreate(metrics.store_errors, name, [StoreOperation.RECORD_SEND, StoreOperation.RECORD_POST])
        self._posted = metrics.events_posted.labels(name)
        self._retries = metrics.post_retries.labels(name)
        self._duration = metrics.post_duration.labels(name)
        self._last_sent = metrics.last_sent.labels(name)

    def wait_for_listener(self) -> None:
        """Give the listener a chance to subscribe first, so early events are not judged unfairly."""
        deadline = time.monotonic() + self.cfg.startup_wait_seconds
        fresh = self.cfg.subscription_fresh_seconds()
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.store.subscribed_since(self.ds.name, fresh, time.time()) is not None:
                self.log.info("listener is subscribed to %s; starting to send", self.ds.name)
                return
            self.stop.wait(0.1)
        if not self.stop.is_set() and self.cfg.startup_wait_seconds > 0:
            self.log.warning(
                "listener not subscribed to %s after %.0fs; sending anyway", self.ds.name, self.cfg.startup_wait_seconds
            )

    def run(self) -> None:
        """Fire one event per slot until stopped or failed out, then let in-flight posts finish."""
        interval = self.ds.interval_seconds
        start = time.monotonic()
        index = 0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                slot = next_slot(start, interval, index, now)
                if slot.skipped:
                    metrics.skipped_slots.labels(self.ds.name, SkipReason.STALL).inc(slot.skipped)
                    self.log.warning("process stalled: skipped %d send slots of %s", slot.skipped, self.ds.name)
                    index = slot.index
                if slot.due > now:
                    self.stop.wait(slot.due - now)
                    continue  # judged again on waking: the wait itself may have stalled
                self._fire()
                index += 1
        finally:
            self._pool.shutdown(wait=True)  # each post ends by its own deadline

    def _fire(self) -> None:
        if not self._slots.acquire(blocking=False):
            metrics.skipped_slots.labels(self.ds.name, SkipReason.BACKPRESSURE).inc()
            self.log.warning(
                "all %d posts of %s still in flight: skipped a send slot", self.cfg.post_concurrency, self.ds.name
            )
            return
        sent_at = time.time()
        try:
            event = self._step.record(sent_at)
        except sqlite3.Error as exc:
            # Record before send: an event the store cannot hold is not posted at all.
            self._slots.release()
            metrics.count_store_error(self.ds.name, StoreOperation.RECORD_SEND, exc)
            metrics.skipped_slots.labels(self.ds.name, SkipReason.STORE).inc()
            return
        self._last_sent.set(sent_at)
        self._pool.submit(self._post, event)

    def _post(self, event: dict) -> None:
        try:
            self._account(event["seqno"], self._step.post(event))
        except Exception:  # a bug here must not kill the pool silently
            self.log.exception("post of %s seqno=%s failed unexpectedly", self.ds.name, event["seqno"])
        finally:
            self._slots.release()

    def _account(self, seqno: int, result: PostResult) -> None:
        self._duration.observe(result.duration)
        if result.attempts > 1:
            self._retries.inc(result.attempts - 1)
        if result.ok:
            self._posted.inc()
            if self.fail_outs.success(self.ds.name):
                self.store.clear_fail_outs()
            if self._note.clear():
                self.log.info("posts succeed again")
            self.log.debug(
                "posted seqno=%d in %.3fs",
                seqno,
                result.duration,
                extra={"dataset": self.ds.name, "seqno": seqno, "duration": result.duration},
            )
            return
        metrics.post_errors.labels(self.ds.name, result.reason).inc()
        problem = self._step.problem(result)
        if self._note.record(problem):
            self.log.error("%s", problem)
        self.log.warning(
            "post failed dataset=%s seqno=%d host=%s reason=%s status=%s attempts=%d after %.2fs",
            self.ds.name,
            seqno,
            self.collector.host,
            result.reason,
            result.status,
            result.attempts,
            result.duration,
            extra={
                "dataset": self.ds.name,
                "seqno": seqno,
                "host": self.collector.host,
                "reason": result.reason,
                "status": result.status,
                "attempts": result.attempts,
                "duration": result.duration,
            },
        )
        fail_out = self.fail_outs.failure(self.ds.name)
        limit = self.fail_outs.limit
        if fail_out is FailOut.DATASET:
            metrics.fail_outs.labels(self.ds.name).inc()
            self.log.error(
                "%d consecutive failed posts to %s (MAX_CONSECUTIVE_ERRORS=%d); other datasets still post, so it "
                "keeps being probed at its interval",
                limit,
                self.ds.name,
                limit,
                extra={"dataset": self.ds.name, "count": limit},
            )
        elif fail_out is FailOut.ALL:
            metrics.fail_outs.labels(self.ds.name).inc()
            count = self.store.record_fail_out(time.time())
            self.log.error(
                "%d consecutive failed posts (MAX_CONSECUTIVE_ERRORS=%d) on every dataset: exiting for a restart "
                "(fail-out %d in a row)",
                limit,
                limit,
                count,
                extra={"dataset": self.ds.name, "count": count},
            )
            self.stop.set()
