"""The send step, written once: record the event, build it, seal it, post it, record the outcome.

The sender runs it for every slot, and `probe check` for each of its few events, so the
check posts and accounts exactly as the sender does. What differs stays with the caller:
the sender's schedule, back-pressure and metrics; the check's spacing and its report.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from probe_sender.collector import Collector, PostError, PostResult
from shared import event as event_mod
from shared import metrics
from shared.auth import HINTS, TokenProvider
from shared.config import Dataset
from shared.store import Store, StoreOperation
from shared.tracing import NoTracer

# Statuses that say the collector knows the client but not the dataset's name or its right to it.
STATUS_PROBLEMS = {
    404: "dataset {name} is not known to the collector (404): check its id and version",
    403: "the collector refuses writes to dataset {name} (403): check the client's permissions",
}
# Failures to reach the collector at all: its host is the cause to name.
UNREACHED = (PostError.DNS, PostError.REFUSED, PostError.TLS, PostError.CONNECTION, PostError.TIMEOUT)


def problem(ds: Dataset, result: PostResult, collector: Collector) -> str:
    """One line an operator understands, naming the cause and the host (never a secret or query):
    for the log, /readyz and `probe check` alike."""
    name = f"{ds.id}/{ds.version}"
    if result.status in STATUS_PROBLEMS:
        return STATUS_PROBLEMS[result.status].format(name=name)
    if result.reason is PostError.AUTH:
        if collector.tokens is None:
            return f"the collector at {collector.host} refuses posts to {name} (401), which go without a token"
        return f"the collector at {collector.host} refuses the token for {name} (401)"
    if result.reason is PostError.TOKEN:
        return f"posts to {name} fail for want of a token: {token_problem(collector.tokens)}"
    if result.reason in UNREACHED:
        return f"posts to {name} fail: the collector at {collector.host}: {result.reason}"
    return f"posts to {name} fail ({result.reason}{f', status {result.status}' if result.status else ''})"


def token_problem(tokens: TokenProvider | None) -> str:
    """Why no token could be had: Keycloak's host, the last failure and what to do about it."""
    cause = tokens.last_failure if tokens is not None else None
    hint = HINTS.get(cause) if cause is not None else None
    why = f"{cause}: {hint}" if hint else f"{cause or 'its token request did not end within the deadline'}"
    return f"Keycloak at {tokens.host if tokens else '?'}: {why}"


@dataclass(frozen=True)
class SendStep:
    """One dataset's send step. `stamp`: fields added to every event before it is sealed (the
    sender's location and group; none for the check, whose events no sibling may take for its own)."""

    store: Store
    app_id: str
    ds: Dataset
    collector: Collector
    key: bytes  # seals each event: the listener takes no copy without it
    tracer: NoTracer = field(default_factory=NoTracer)
    stamp: Mapping[str, str] = field(default_factory=dict)

    def record(self, sent_at: float) -> dict:
        """Record the event before it is sent, then build it. Raises sqlite3.Error: an event the
        store cannot hold is never posted."""
        seqno = self.store.record_send(self.app_id, self.ds.name, self.ds.version, sent_at, time.monotonic())
        event = event_mod.build(self.app_id, self.ds.name, seqno, sent_at, self.ds.payload_bytes)
        event.update(self.stamp)
        return event

    def post(self, event: dict) -> PostResult:
        """Seal and post a recorded event, and record how the post ended."""
        with self.tracer.event(event, self.ds.name) as segment:
            event_mod.seal(event, self.key)  # the digest covers every field, the trace id included
            result = self.collector.post(event)
            self.tracer.outcome(segment, "posted" if result.ok else str(result.reason), not result.ok)
        try:
            self.store.record_post(self.app_id, self.ds.name, event["seqno"], result.ok, result.reason, time.time())
        except sqlite3.Error as exc:  # the event stays pending, and is judged unobserved, never lost
            metrics.count_store_error(self.ds.name, StoreOperation.RECORD_POST, exc)
        return result

    def problem(self, result: PostResult) -> str:
        """What a failed post says to an operator (`problem`)."""
        return problem(self.ds, result, self.collector)
