"""The figures `probe status` and the status page show, from the same queries.

Kept apart from both presentations so that the terminal and the page cannot disagree,
and so that the page's renderer is a pure function of a snapshot (tested and timed
without a store).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from probe_stack.verdict.readiness import readiness_facts
from probe_stack.verdict.rule import Facts, Limits, Verdict, judge
from shared.config import Config, Dataset
from shared.store import EventRow, EventState, FailureRow, Store

HOUR = 3600.0
# The graphs span the last hour, or the stack's life when shorter (at least MIN_WINDOW), in
# GRAPH_POINTS buckets: a point a minute over an hour, and a useful graph from the start.
MIN_WINDOW = 300.0
GRAPH_POINTS = 60
LATENCY_RECENT = 900.0  # the verdict's p99 is over the last 15 minutes, as the alert's
DEFAULT_LIMITS = Limits()
RECENT = 10  # the last events shown per dataset on the page
# The store's states in the words of the metrics, for `probe status` and the page alike: a `posted`
# event is one the collector accepted and the listener still awaits (probe_events_in_flight), while
# probe_events_posted_total counts every accepted event; `pending` is still being posted.
STATE_WORDS = {EventState.POSTED.value: "awaiting", EventState.PENDING.value: "posting"}
# The counters the page shows, without their _total: events by fate since the stack started.
COUNTERS = (
    "probe_events_posted",
    "probe_event_post_errors",
    "probe_events_received",
    "probe_events_lost",
    "probe_events_unobserved",
    "probe_events_late",
    "probe_events_duplicated",
    "probe_events_corrupted",
    "probe_websocket_disconnects",
)


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    verdict: Verdict
    recent: list[EventRow]
    failures: list[FailureRow]
    latency: list[tuple[float, float, float]]  # (bucket start, p50, p99), seconds
    lost: int  # in the last hour
    accepted: int  # accepted by the collector and judged or received, in the last hour
    intervals: list[tuple[float, float, bool]]  # subscriptions in the window: (start, end, open)
    window: float = HOUR  # seconds the graphs span, back from the snapshot's time
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def loss_share(self) -> float | None:
        return self.lost / self.accepted if self.accepted else None


@dataclass(frozen=True)
class Snapshot:
    at: float
    app_id: str
    datasets: list[DatasetStatus]
    problem: str | None = None  # why some or all of it could not be read


def recent_events(store: Store, limit: int, dataset: str | None = None) -> list[EventRow]:
    """The newest events, of one dataset or all: `probe status`'s rows and the page's."""
    return store.recent_events(limit, dataset)


def totals(store: Store) -> dict[str, dict[str, int]]:
    """Events by state for each dataset in the store (within the retention)."""
    return store.totals()


def dataset_status(
    cfg: Config, ds: Dataset, store: Store, now: float, recent: int = RECENT, limits: Limits = DEFAULT_LIMITS
) -> DatasetStatus:
    """Everything the page says about one dataset; its verdict from the same rule as /readyz."""
    since = now - HOUR
    base = readiness_facts(cfg, ds, store, now)
    counts = store.window_counts(ds.name, since)
    lost = counts.get(EventState.LOST, 0)
    accepted = lost + counts.get(EventState.RECEIVED, 0) + counts.get(EventState.LATE, 0)
    first = store.first_sent_since(ds.name, since)
    window = HOUR if first is None else min(HOUR, max(MIN_WINDOW, now - first))
    latency = store.latency_quantiles(ds.name, now - window, window / GRAPH_POINTS)
    intervals = store.subscription_intervals(ds.name, now - window)
    arrived = store.last_arrival(ds.name)
    if arrived is None:  # nothing yet: count from the start of this subscription
        opened = [start for start, _, is_open in intervals if is_open]
        arrived = min(opened) if opened else None
    facts = Facts(
        **{
            **base.__dict__,
            "last_arrival_age": None if arrived is None else max(0.0, now - arrived),
            "loss_share": lost / accepted if accepted else None,
            "latency_p99": recent_p99(latency, now),
        }
    )
    return DatasetStatus(
        name=ds.name,
        verdict=judge(facts, limits),
        recent=recent_events(store, recent, ds.name),
        failures=store.failures(ds.name),
        latency=latency,
        lost=lost,
        accepted=accepted,
        intervals=intervals,
        window=window,
    )


def recent_p99(latency: list[tuple[float, float, float]], now: float) -> float | None:
    """The highest p99 of the buckets of the last 15 minutes (a bucket's p99 bounds the window's)."""
    return max((p99 for start, _, p99 in latency if start >= now - LATENCY_RECENT and p99 is not None), default=None)


def snapshot(
    cfg: Config,
    store: Store,
    now: float,
    budget: float = 2.0,
    counters: dict[str, dict[str, float]] | None = None,
) -> Snapshot:
    """Every configured dataset's status, within `budget` seconds of reading: datasets left
    unread when it runs out (or when the store fails) are named in `problem`, not waited for."""
    started = time.monotonic()
    vanished = store.vanished()
    if vanished:
        return Snapshot(now, "-", [], vanished)
    try:
        app_id = store.app_id()
    except sqlite3.Error as exc:
        return Snapshot(now, "-", [], f"the store could not be read: {exc}")
    out: list[DatasetStatus] = []
    problem = None
    for ds in cfg.datasets:
        if time.monotonic() - started > budget:
            problem = f"the store was slow: {len(cfg.datasets) - len(out)} dataset(s) not read within {budget:g}s"
            break
        try:
            status = dataset_status(cfg, ds, store, now)
        except sqlite3.Error as exc:
            problem = f"the store could not be read: {exc}"
            break
        if counters is not None:
            status = DatasetStatus(**{**status.__dict__, "counters": counters.get(ds.name, {})})
        out.append(status)
    return Snapshot(now, app_id, out, problem)


def counters_by_dataset(families: Iterable) -> dict[str, dict[str, float]]:
    """The COUNTERS of each dataset, summed over their other labels, from collected metric families."""
    wanted = {f"{name}_total": name for name in COUNTERS}
    out: dict[str, dict[str, float]] = {}
    for family in families:
        for sample in family.samples:
            name = wanted.get(sample.name)
            dataset = sample.labels.get("dataset")
            if name is None or dataset is None:
                continue
            per = out.setdefault(dataset, dict.fromkeys(COUNTERS, 0.0))
            per[name] += sample.value
    return out
