"""Pure computations of the benchmark: percentiles, schedule fidelity, overhead, exactness."""

from __future__ import annotations

from dataclasses import dataclass

from testkit.truth import implied_state


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Schedule:
    target_rate: float
    achieved_rate: float
    jitter_p50_ms: float
    jitter_p99_ms: float
    jitter_max_ms: float

    @property
    def holds(self) -> bool:
        """Within 1% of the target rate."""
        return abs(self.achieved_rate / self.target_rate - 1) <= 0.01


def schedule(sent_at: list[float], interval: float) -> Schedule:
    """Achieved rate, and each send's distance from the nearest slot of the grid first + k * interval.

    Distance to the nearest slot rather than to slot i, so that one skipped slot
    (counted separately) does not show up as jitter of every later send.
    """
    first = sent_at[0]
    jitter = []
    for t in sent_at:
        offset = (t - first) % interval
        jitter.append(min(offset, interval - offset) * 1000)
    span = sent_at[-1] - first
    achieved = (len(sent_at) - 1) / span if span > 0 else float("nan")
    return Schedule(1 / interval, achieved, percentile(jitter, 50), percentile(jitter, 99), max(jitter))


@dataclass(frozen=True)
class Overhead:
    """Per delivered event, in ms: the probe's latency minus the emulator's true hold time, and
    its two sides, which add up to it."""

    total: list[float]
    send: list[float]  # send time to the emulator's acceptance: record, hand-off, POST, its reading
    receive: list[float]  # the emulator's websocket write to the listener's receipt


def overhead_ms(events: dict[int, tuple[float, float]], truth: dict[int, dict]) -> Overhead:
    """The overhead of each delivered event, from (sent_at, latency) by seqno."""
    out = Overhead([], [], [])
    for seqno, (sent_at, latency) in events.items():
        event = truth.get(seqno)
        if event and event["writes"]:
            send = (event["accepted_at"] - sent_at) * 1000
            receive = (sent_at + latency - event["writes"][0]["at"]) * 1000
            out.total.append(send + receive)  # latency - (first write - acceptance)
            out.send.append(send)
            out.receive.append(receive)
    return out


def mismatches(rows: dict[int, tuple[str, int]], truth: dict[int, dict]) -> list[tuple[int, tuple, tuple]]:
    """Events whose (state, receive count) differs from what the truth implies."""
    bad = []
    for seqno, actual in rows.items():
        expected = implied_state(truth.get(seqno))
        if tuple(actual) != expected:
            bad.append((seqno, tuple(actual), expected))
    return bad
