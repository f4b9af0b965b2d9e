"""What the store hands out and takes in: the states, the errors and the rows.

Kept apart from the SQL so that every job of the store (and every caller) reads one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StoreError(Exception):
    """The store file cannot be used; str() says why and what to do."""


class StoreWriteFailed(Exception):
    """A write the caller needed failed (disk full, say); already counted and logged."""


class EventState(StrEnum):
    """Where an event is in its life. Final states: post_failed, received, late, lost, unobserved."""

    PENDING = "pending"  # recorded, post outcome not known yet
    POSTED = "posted"  # accepted by the collector, awaited at the far end
    POST_FAILED = "post_failed"  # never accepted: not expected, never lost
    RECEIVED = "received"
    LATE = "late"  # first arrival after it was judged lost or unobserved
    LOST = "lost"  # missing after the loss timeout while the listener was subscribed all along
    UNOBSERVED = "unobserved"  # missing, but the probe was blind for part of the time


OPEN_STATES = (EventState.PENDING, EventState.POSTED)
FINAL_STATES = tuple(s for s in EventState if s not in OPEN_STATES)


class PostState(StrEnum):
    """What the collector made of an event's post."""

    PENDING = "pending"  # not known yet (in progress, or the sender died meanwhile)
    OK = "ok"  # accepted
    FAILED = "failed"  # failed for good


class StoreOperation(StrEnum):
    """What a process was writing when the store failed (the `operation` label of probe_store_errors)."""

    RECORD_SEND = "record_send"
    RECORD_POST = "record_post"
    CLASSIFY = "classify"
    SUBSCRIPTION = "subscription"
    JUDGE = "judge"


class Arrival(StrEnum):
    """What one received message of ours is."""

    RECEIVED = "received"
    LATE = "late"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"
    FORGED = "forged"  # its time_sent is not the send time on record: someone else's copy


@dataclass(frozen=True)
class ArrivalResult:
    kind: Arrival
    latency: float | None = None  # seconds, clamped at 0
    clamped: bool = False  # receive time was before send time (a clock step)
    out_of_order: bool = False
    judged_as: EventState | None = None  # for LATE: what it had been judged
    copy: int = 1  # which copy of the event this was (2: its first duplicate)


@dataclass(frozen=True)
class EventRow:
    dataset: str
    seqno: int
    sent_at: float
    state: EventState
    post_state: PostState
    post_error: str | None
    latency: float | None
    receive_count: int


class FailureKind(StrEnum):
    """A failure kept longer than the events' retention (the last FAILURES_KEPT of each dataset)."""

    LOST = "lost"
    UNOBSERVED = "unobserved"
    POST_FAILED = "post_failed"
    CORRUPTED = "corrupted"  # a copy that arrived altered (its event is still classified)


@dataclass(frozen=True)
class FailureRow:
    dataset: str
    seqno: int
    sent_at: float
    kind: FailureKind
    at: float  # when it was found out
    detail: str | None  # the post's error reason, or what differed in an altered copy
    state: EventState | None  # the event's state now (a lost one may have arrived late); None once pruned
