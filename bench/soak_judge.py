"""Pure parts of `make soak`: the trend of a sampled figure, and each event against the truth
when the listener was away for part of the time (killed, reconnecting).

Kept apart from the soak's process handling so that the rules can be read, and checked, alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

FINAL = frozenset({"post_failed", "received", "late", "lost", "unobserved"})


@dataclass(frozen=True)
class Trend:
    """A figure over the second half of a run: its fitted slope, and the values it went between."""

    per_100k_events: float  # least-squares slope, in the figure's unit per 100,000 events
    start: float  # the fitted value at the half-way point
    end: float  # the fitted value at the end

    @property
    def change(self) -> float:
        """The fitted change over the second half, as a share of its start (0 for a flat line)."""
        return (self.end - self.start) / self.start if self.start else 0.0


def trend(events: Sequence[float], values: Sequence[float]) -> Trend:
    """Least squares of `values` against `events` over the second half of the samples.

    The second half only: the first holds the warm-up (imports, caches, the store filling up
    to its retention), which is growth that stops, not growth that goes on.
    """
    half = len(events) // 2
    xs, ys = list(events[half:]), list(values[half:])
    if len(xs) < 2 or xs[-1] == xs[0]:
        return Trend(0.0, ys[0] if ys else 0.0, ys[-1] if ys else 0.0)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    fit = lambda x: my + slope * (x - mx)  # noqa: E731
    return Trend(slope * 100_000, fit(xs[0]), fit(xs[-1]))


def window_change(values: Sequence[float], share: float = 0.1) -> float:
    """The change from the half-way point to the end, as a share: the median of the samples
    around the half-way point against the median of the last ones.

    Medians of windows, not two samples nor the fitted line: the sender and the listener are
    killed every minute, so their memory is a saw-tooth whose phase would decide either.
    """
    if not values:
        return 0.0
    width = max(3, int(len(values) * share))
    mid = len(values) // 2
    at_half = statistics.median(values[max(0, mid - width // 2) : mid + (width + 1) // 2])
    at_end = statistics.median(values[-width:])
    return (at_end - at_half) / at_half if at_half else 0.0


@dataclass(frozen=True)
class Interval:
    start: float
    end: float  # inf while still open


def _covered(intervals: Sequence[Interval], start: float, end: float) -> bool:
    """True if one subscription spans [start, end] whole."""
    return any(i.start <= start and end <= i.end for i in intervals)


def _touched(intervals: Sequence[Interval], start: float, end: float) -> bool:
    return any(i.start < end and start < i.end for i in intervals)


def verdict(
    state: str,
    count: int,
    sent_at: float,
    truth: dict | None,
    subscriptions: Sequence[Interval],
    loss_timeout: float,
    margin: float = 2.0,
    probe_blind: Sequence[Interval] = (),
) -> str | None:
    """Why an event's final (state, receive count) contradicts the truth, or None if it does not.

    `subscriptions` are the emulator's own record of the dataset's subscriptions. Where one
    of them spans the event's whole window (its send to its loss timeout, widened by
    `margin` for the listener's view of its own connection), the probe saw everything and
    must agree with the truth exactly. Where none touches the window, the probe was blind
    and must say so (unobserved), never blame the pipeline (lost). In between it may say
    either, but it still never counts an event it was not sent, nor one the pipeline dropped.
    `probe_blind` are times the probe itself could not record what it saw (the store full):
    an event whose window touches one may be unobserved, as where no subscription was.
    """
    if state not in FINAL:
        return f"not final: {state}"
    if truth is None:
        return None if state in ("post_failed", "unobserved") else "the collector never accepted it"
    if state == "post_failed":
        return "the collector accepted it"
    window = (sent_at - margin, sent_at + loss_timeout + margin)
    seen_all = _covered(subscriptions, *window) and not _touched(probe_blind, *window)
    blind = not _touched(subscriptions, sent_at, sent_at + loss_timeout)
    if truth["fate"] == "dropped":
        return _dropped(state, count, seen_all, blind)
    return _accepted(state, count, len(truth["writes"]), seen_all and truth["fate"] == "delivered", blind)


def _dropped(state: str, count: int, seen_all: bool, blind: bool) -> str | None:
    """An event the pipeline dropped: never arrived; lost only where the probe could see it."""
    if state in ("received", "late") or count:
        return "the pipeline dropped it, yet it arrived"
    if blind and state == "lost":
        return "judged lost while the listener was not subscribed"
    if seen_all and state != "lost":
        return "dropped while subscribed throughout, yet not lost"
    return None


def _accepted(state: str, count: int, written: int, seen_delivery: bool, blind: bool) -> str | None:
    """An event the pipeline kept: each copy written counted at most once; arrived where seen whole."""
    if count > written:
        return f"{count} arrivals counted, {written} written"
    if seen_delivery:
        return None if (state, count) in (("received", written), ("late", written)) and written else "differs"
    if state == "lost" and (blind or written):
        return "delivered, yet judged lost"
    return None
