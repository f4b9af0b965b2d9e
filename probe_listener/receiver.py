"""Turning one received frame into exactly one classification, one store change and its metrics."""

from __future__ import annotations

import logging
import sqlite3

from probe_listener.classify import Kind, MalformedReason, Message, parse
from shared import event as event_mod
from shared import metrics
from shared.config import Config, Dataset
from shared.log import DatasetLog
from shared.store import Arrival, ArrivalResult, Store, StoreOperation, StoreWriteFailed
from shared.tracing import NoTracer

log = logging.getLogger("listener")
# Distinct peer locations counted per dataset: a peer names its own, so a hostile one could
# otherwise make a series of every name it sends.
MAX_PEER_LOCATIONS = 16
OTHER_LOCATION = "other"


class Receiver:
    def __init__(
        self,
        cfg: Config,
        dataset: Dataset,
        store: Store,
        app_id: str,
        tracer: NoTracer | None = None,
        siblings: frozenset[str] = frozenset(),
    ) -> None:
        """`siblings`: the names of the other entries with the same dataset id, whose events this
        subscription sees too and leaves to their own subscriptions."""
        self.tracer = tracer or NoTracer()
        self.cfg = cfg
        self.dataset = dataset
        self.store = store
        self.app_id = app_id
        self.siblings = siblings
        ds = dataset.name
        self.ds = ds
        self.log = DatasetLog(log, ds)
        self.key = store.event_key()
        self._event_level = logging.INFO if cfg.log_events else logging.DEBUG
        metrics.precreate(metrics.events_malformed, ds, MalformedReason)
        self._latency = metrics.latency_histogram(cfg.latency_buckets).labels(ds)
        self._latest = metrics.latest_latency.labels(ds)
        self._received = metrics.events_received.labels(ds)
        self._late = metrics.events_late.labels(ds)
        self._duplicated = metrics.events_duplicated.labels(ds)
        self._duplicates = metrics.events_duplicates.labels(ds)
        self._out_of_order = metrics.events_out_of_order.labels(ds)
        self._unknown = metrics.events_unknown.labels(ds)
        self._wrong_appid = metrics.wrong_appid.labels(ds)
        self._clamped = metrics.latency_clamped.labels(ds)
        self._last_received = metrics.last_received.labels(ds)
        self._corrupted = metrics.events_corrupted.labels(ds)
        self._peer_locations: set[str] = set()

    def _peer(self, dataset: str | None, location: str) -> None:
        """A peer's event: counted by its location, once (a sibling entry's is counted by its own subscription)."""
        if dataset is not None and dataset in self.siblings:
            return
        if location not in self._peer_locations:
            if len(self._peer_locations) >= MAX_PEER_LOCATIONS:
                location = OTHER_LOCATION
            else:
                self._peer_locations.add(location)
        metrics.peer_events.labels(self.ds, location).inc()

    def handle(self, payload: bytes, binary: bool, received_at: float, received_mono: float | None = None) -> bool:
        """One frame, one outcome; True when it was the first arrival of one of the probe's own
        events, which come at the send rate at most. Anything else is noise, which the subscription
        budgets: duplicates too, as anyone on the dataset can send our sealed events back at full
        speed. Raises only StoreWriteFailed (the arrival could not be recorded)."""
        message = parse(
            payload,
            binary,
            self.cfg.max_message_bytes,
            self.app_id,
            self.key,
            self.dataset.payload_bytes,
            self.cfg.group,
        )
        if message.kind is Kind.MALFORMED:
            self._malformed(message, len(payload))
            return False
        if message.kind is Kind.PEER:  # a second witness's, but noise to this subscription's budget
            self._peer(message.dataset, message.location or OTHER_LOCATION)
            return False
        if message.kind is Kind.WRONG_APPID:
            self._wrong_appid.inc()
            self.log.debug("event of another instance: app_id=%s seqno=%s", shown(message.app_id), message.seqno)
            return False
        if not self._watched_here(message):
            return False
        result = self._classify(message, received_at, received_mono)
        if result.kind is Arrival.FORGED:
            metrics.events_malformed.labels(self.ds, MalformedReason.FORGED).inc()
            self.log.warning(
                "seqno=%d arrived with a time_sent that is not its send time: a forged copy, skipped", message.seqno
            )
            return False
        if message.integrity is event_mod.Integrity.ALTERED:
            self._altered(message, received_at)
        if result.kind is Arrival.UNKNOWN:
            self._unknown.inc()
            self.log.warning(
                "event unknown to the store: seqno=%d",
                message.seqno,
                extra={"dataset": self.ds, "seqno": message.seqno},
            )
            return False
        return self._arrived(message, result, received_at)

    def _malformed(self, message: Message, size: int) -> None:
        metrics.events_malformed.labels(self.ds, message.reason).inc()
        if message.reason is MalformedReason.UNREADABLE:  # no check foresaw it: a bug of ours
            self.log.error("a frame of %d bytes could not be read; skipped (please report)", size)
        elif message.reason is MalformedReason.FORGED:
            self.log.warning(
                "a copy of seqno=%s not sealed with this instance's key: forged, skipped",
                message.seqno,
                extra={"dataset": self.ds, "reason": message.reason, "seqno": message.seqno},
            )
        else:
            self.log.warning(
                "malformed message skipped: reason=%s size=%d",
                message.reason,
                size,
                extra={"dataset": self.ds, "reason": message.reason, "size": size},
            )

    def _watched_here(self, message: Message) -> bool:
        """Whether an event of ours is this entry's (a sibling entry's is counted by its own subscription)."""
        if message.dataset is None or message.dataset == self.ds:
            return True
        if message.dataset not in self.siblings:
            self._unknown.inc()  # ours by app_id, but of no entry on this dataset (one since removed, say)
            self.log.warning(
                "event of a dataset entry not watched here: %s seqno=%s", shown(message.dataset), message.seqno
            )
        return False

    def _classify(self, message: Message, received_at: float, received_mono: float | None) -> ArrivalResult:
        try:
            return self.store.classify_arrival(
                self.app_id, self.ds, message.seqno, received_at, message.time_sent, received_mono
            )
        except sqlite3.Error as exc:
            # An arrival that cannot be recorded leaves the probe blind: the subscription ends (and
            # its interval with it), so that nothing sent meanwhile is judged lost.
            metrics.count_store_error(self.ds, StoreOperation.CLASSIFY, exc)
            raise StoreWriteFailed(StoreOperation.CLASSIFY) from None

    def _altered(self, message: Message, received_at: float) -> None:
        seqno = message.seqno
        self._corrupted.inc()
        what = event_mod.differences(message.doc or {}, message.padding)
        self.log.warning(
            "seqno=%d arrived altered (%s); its arrival is still counted",
            seqno,
            "; ".join(what),
            extra={"dataset": self.ds, "seqno": seqno, "differences": what},
        )
        try:  # kept among the dataset's failures, for the status page
            self.store.record_corrupted(self.app_id, self.ds, seqno, "; ".join(what), received_at)
        except sqlite3.Error as exc:  # the arrival still counts; only the page's record is missing
            metrics.count_store_error(self.ds, StoreOperation.CLASSIFY, exc)

    def _arrived(self, message: Message, result: ArrivalResult, received_at: float) -> bool:
        """A copy of ours the store knows: True for its first arrival, counted and logged."""
        seqno = message.seqno
        # One segment per copy, up to the first duplicate: a peer replaying our events must not
        # turn each copy into an X-Ray segment (each one billed).
        if self.tracer.enabled and result.copy <= 2:
            self.tracer.arrival(message.trace_id, self.ds, seqno, result.kind, result.latency)
        if result.kind is Arrival.DUPLICATE:
            self._duplicated.inc()
            self._duplicates.inc()
            self.log.warning(  # a warning: a replayed flood's lines are limited and summarised
                "duplicate seqno=%d latency=%.3fs",
                seqno,
                result.latency,
                extra={"dataset": self.ds, "seqno": seqno, "latency": result.latency},
            )
            return False
        if result.clamped:
            self._clamped.inc()
            self.log.warning("seqno=%d arrived before its send time (clock step?): latency taken as 0", seqno)
        self._received.inc()
        self._latency.observe(result.latency)
        self._latest.set(result.latency)
        self._last_received.set(received_at)
        if result.out_of_order:
            self._out_of_order.inc()
        if result.kind is Arrival.LATE:
            self._late.inc()
            self.log.warning(
                "late seqno=%d latency=%.3fs (was judged %s)",
                seqno,
                result.latency,
                result.judged_as,
                extra={"dataset": self.ds, "seqno": seqno, "latency": result.latency, "judged_as": result.judged_as},
            )
        else:
            self.log.log(
                self._event_level,
                "received seqno=%d latency=%.3fs",
                seqno,
                result.latency,
                extra={"dataset": self.ds, "seqno": seqno, "latency": result.latency},
            )
        return True


def shown(text: object, limit: int = 40) -> str:
    """A peer's text for a log line: escaped (a lone surrogate cannot be written out) and cut short."""
    out = ascii(text)
    return out if len(out) <= limit else out[:limit] + "..."
