"""One rule for what a dataset's state is: /readyz, the status page and (in PromQL) the alerts.

A pure function of a few facts, so that the page and readiness cannot drift apart, and so
that the rule is tested in-process without a store. The thresholds are the alerts' own
defaults (deploy/prometheus/alert-params.yaml; a test keeps them in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # events arrive, but some are lost or slow
    DOWN = "down"  # nothing arrives, or nothing can be posted
    BLIND = "blind"  # the listener is not subscribed: the probe cannot tell


class Why(StrEnum):
    """The reason behind a verdict; the first four keep the probe from being ready."""

    NOT_SUBSCRIBED = "not_subscribed"
    NO_POST_YET = "no_post_yet"
    POSTS_STALE = "posts_stale"
    NOTHING_ARRIVING = "nothing_arriving"
    LOSS = "loss"
    LATENCY = "latency"
    OK = "ok"


# Not ready: the probe cannot tell the truth about the pipeline. Nothing arriving while posts
# succeed is the truth about the pipeline, so the probe stays ready then.
_NOT_READY = frozenset({Why.NOT_SUBSCRIBED, Why.NO_POST_YET, Why.POSTS_STALE})


@dataclass(frozen=True)
class Limits:
    """The alerts' thresholds (alert-params.yaml: stale_after_seconds, loss_ratio, latency_p99_seconds)."""

    stale_after_seconds: float = 120.0
    loss_ratio: float = 0.01
    latency_p99_seconds: float = 30.0


@dataclass(frozen=True)
class Facts:
    """What is known about one dataset now; None for what was not asked (readiness asks less)."""

    subscribed: bool
    last_ok_post_age: float | None  # seconds since the newest accepted post; None: none yet
    max_post_age: float  # readiness's limit on that age
    listener_note: str | None = None
    sender_note: str | None = None
    last_arrival_age: float | None = None  # since the newest arrival (or since subscribing, if none)
    loss_share: float | None = None  # lost / accepted over the last hour
    latency_p99: float | None = None  # seconds, over the last hour


@dataclass(frozen=True)
class Verdict:
    health: Health
    why: Why
    text: str  # the reason, for a person (and /readyz's body)

    @property
    def ready(self) -> bool:
        return self.why not in _NOT_READY


def judge(facts: Facts, limits: Limits = Limits()) -> Verdict:
    """The dataset's verdict: blind before down before degraded before healthy."""
    if not facts.subscribed:
        return Verdict(Health.BLIND, Why.NOT_SUBSCRIBED, _with_note("listener is not subscribed", facts.listener_note))
    if facts.last_ok_post_age is None:
        return Verdict(Health.DOWN, Why.NO_POST_YET, _with_note("no successful post yet", facts.sender_note))
    if facts.last_ok_post_age > facts.max_post_age:
        reason = f"last successful post {facts.last_ok_post_age:.0f}s ago (limit {facts.max_post_age:g}s)"
        return Verdict(Health.DOWN, Why.POSTS_STALE, _with_note(reason, facts.sender_note))
    if facts.last_arrival_age is not None and facts.last_arrival_age > limits.stale_after_seconds:
        reason = f"nothing arrived for {facts.last_arrival_age:.0f}s (limit {limits.stale_after_seconds:g}s)"
        return Verdict(Health.DOWN, Why.NOTHING_ARRIVING, reason)
    if facts.loss_share is not None and facts.loss_share > limits.loss_ratio:
        reason = f"{facts.loss_share:.1%} of accepted events lost in the last hour (limit {limits.loss_ratio:.1%})"
        return Verdict(Health.DEGRADED, Why.LOSS, reason)
    if facts.latency_p99 is not None and facts.latency_p99 > limits.latency_p99_seconds:
        reason = f"p99 latency {facts.latency_p99:.1f}s in the last hour (limit {limits.latency_p99_seconds:g}s)"
        return Verdict(Health.DEGRADED, Why.LATENCY, reason)
    return Verdict(Health.HEALTHY, Why.OK, "ready")


def _with_note(reason: str, note: str | None) -> str:
    return f"{reason}: {note}" if note else reason
