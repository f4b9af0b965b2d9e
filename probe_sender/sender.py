"""The sender's loop: record each event, post it in the background, account for it once."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from probe_sender.collector import Collector, PostError, PostResult
from probe_sender.fail_out import FailOutTracker, fail_out_delay
from probe_sender.schedule import SkipReason, next_slot
from shared import metrics
from shared.auth import AuthError, TokenResult
from shared.config import Config
from shared.store import Note, Store, StoreOperation
from shared.tracing import NoTracer

log = logging.getLogger("sender")


class Sender:
    def __init__(
        self, cfg: Config, store: Store, collector: Collector, app_id: str, tracer: NoTracer | None = None
    ) -> None:
        self.tracer = tracer or NoTracer()
        self.cfg = cfg
        self.store = store
        self.collector = collector
        self.app_id = app_id
        self.stop = threading.Event()
        self._note = Note(store, "sender")  # a problem of the posts, on record for /readyz
        self.fail_outs = FailOutTracker(cfg.max_consecutive_errors, on_record=store.fail_outs()[0] > 0)
        self._slots = threading.BoundedSemaphore(cfg.post_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=cfg.post_concurrency, thread_name_prefix="post")
        ds = cfg.dataset_id
        metrics.precreate(metrics.post_errors, ds, PostError)
        metrics.precreate(metrics.token_requests, ds, TokenResult)
        metrics.precreate(metrics.skipped_slots, ds, SkipReason)
        metrics.fail_outs.labels(ds)
        metrics.precreate(metrics.store_errors, ds, [StoreOperation.RECORD_SEND, StoreOperation.RECORD_POST])
        self._posted = metrics.events_posted.labels(ds)
        self._retries = metrics.post_retries.labels(ds)
        self._duration = metrics.post_duration.labels(ds)
        self._last_sent = metrics.last_sent.labels(ds)

    def back_off_after_fail_out(self) -> None:
        """After earlier fail-outs, wait (exponentially longer each time) before sending again."""
        count, last_at = self.store.fail_outs()
        delay = fail_out_delay(count, last_at, time.time())
        if delay > 0:
            log.warning("restart backoff: %d fail-out(s) in a row; waiting %.0fs before sending", count, delay)
            self.stop.wait(delay)

    def warm_up(self) -> None:
        """Fetch the first token before the schedule starts: the first request of the
        auth client is slow (imports, TLS setup) and would otherwise stall the first slots."""
        if self.collector.tokens is None or self.stop.is_set():
            return
        try:
            self.collector.tokens.get()
        except AuthError as exc:
            log.warning("no token yet (%s); the first posts will retry", exc)

    def wait_for_listener(self) -> None:
        """Give the listener a chance to subscribe first, so early events are not judged unfairly."""
        deadline = time.monotonic() + self.cfg.startup_wait_seconds
        fresh = self.cfg.ping_interval_seconds + self.cfg.pong_timeout_seconds + 2
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.store.subscribed_since(fresh, time.time()) is not None:
                log.info("listener is subscribed; starting to send")
                return
            self.stop.wait(0.1)
        if not self.stop.is_set() and self.cfg.startup_wait_seconds > 0:
            log.warning("listener not subscribed after %.0fs; sending anyway", self.cfg.startup_wait_seconds)

    def run(self) -> None:
        """Fire one event per slot until stopped or failed out, then let in-flight posts finish."""
        interval = self.cfg.event_interval_seconds
        start = time.monotonic()
        index = 0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                slot = next_slot(start, interval, index, now)
                if slot.skipped:
                    metrics.skipped_slots.labels(self.cfg.dataset_id, SkipReason.STALL).inc(slot.skipped)
                    log.warning("process stalled: skipped %d send slots", slot.skipped)
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
            metrics.skipped_slots.labels(self.cfg.dataset_id, SkipReason.BACKPRESSURE).inc()
            log.warning("all %d posts still in flight: skipped a send slot", self.cfg.post_concurrency)
            return
        sent_at = time.time()
        try:
            seqno = self.store.record_send(self.app_id, self.cfg.dataset_id, self.cfg.dataset_version, sent_at)
        except sqlite3.Error as exc:
            # Record before send: an event the store cannot hold is not posted at all.
            self._slots.release()
            metrics.count_store_error(self.cfg.dataset_id, StoreOperation.RECORD_SEND, exc)
            metrics.skipped_slots.labels(self.cfg.dataset_id, SkipReason.STORE).inc()
            return
        event = {
            "app_id": self.app_id,
            "seqno": seqno,
            "time_sent": datetime.fromtimestamp(sent_at, UTC).isoformat(timespec="microseconds"),
        }
        self._last_sent.set(sent_at)
        self._pool.submit(self._post, event)

    def _problem(self, result: PostResult) -> str:
        """One line an operator understands, for the log and /readyz."""
        ds = f"{self.cfg.dataset_id}/{self.cfg.dataset_version}"
        if result.status == 404:
            return f"dataset {ds} is not known to the collector (404): check DATASET_ID and DATASET_VERSION"
        if result.status == 403:
            return f"the collector refuses writes to dataset {ds} (403): check the client's permissions"
        if result.reason is PostError.AUTH:
            return "posts fail for want of a token the collector accepts (see the token errors)"
        return f"posts fail ({result.reason}{f', status {result.status}' if result.status else ''})"

    def _post(self, event: dict) -> None:
        try:
            with self.tracer.event(event, self.cfg.dataset_id) as segment:
                result = self.collector.post(event)
                self.tracer.outcome(segment, "posted" if result.ok else str(result.reason), not result.ok)
            try:
                self.store.record_post(self.app_id, event["seqno"], result.ok, result.reason, time.time())
            except sqlite3.Error as exc:  # the event stays pending, and is judged unobserved, never lost
                metrics.count_store_error(self.cfg.dataset_id, StoreOperation.RECORD_POST, exc)
            self._account(event["seqno"], result)
        except Exception:  # a bug here must not kill the pool silently
            log.exception("post of seqno=%s failed unexpectedly", event["seqno"])
        finally:
            self._slots.release()

    def _account(self, seqno: int, result: PostResult) -> None:
        self._duration.observe(result.duration)
        if result.attempts > 1:
            self._retries.inc(result.attempts - 1)
        if result.ok:
            self._posted.inc()
            if self.fail_outs.success():
                self.store.clear_fail_outs()
            if self._note.clear():
                log.info("posts succeed again")
            log.debug(
                "posted seqno=%d in %.3fs",
                seqno,
                result.duration,
                extra={"dataset": self.cfg.dataset_id, "seqno": seqno, "duration": result.duration},
            )
            return
        metrics.post_errors.labels(self.cfg.dataset_id, result.reason).inc()
        problem = self._problem(result)
        if self._note.record(problem):
            log.error("%s", problem)
        log.warning(
            "post failed seqno=%d reason=%s status=%s attempts=%d after %.2fs",
            seqno,
            result.reason,
            result.status,
            result.attempts,
            result.duration,
            extra={
                "dataset": self.cfg.dataset_id,
                "seqno": seqno,
                "reason": result.reason,
                "status": result.status,
                "attempts": result.attempts,
                "duration": result.duration,
            },
        )
        if self.fail_outs.failure():
            metrics.fail_outs.labels(self.cfg.dataset_id).inc()
            limit = self.fail_outs.limit
            count = self.store.record_fail_out(time.time())
            log.error(
                "%d consecutive failed posts (MAX_CONSECUTIVE_ERRORS=%d): exiting for a restart (fail-out %d in a row)",
                limit,
                limit,
                count,
            )
            self.stop.set()
