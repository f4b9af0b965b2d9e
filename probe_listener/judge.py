"""The periodic judgement: overdue events become lost or unobserved, from the store alone.

It runs in the listener because only the listener knows it is alive and
subscribed; it works from the store, so a restart resumes exactly where the
previous process stopped and nothing is judged twice.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from shared import metrics
from shared.config import Config
from shared.store import EventState, Store, StoreOperation

log = logging.getLogger("listener")

PRUNE_EVERY = 600.0
JUDGE_MAX = 5.0


def set_missing_shares(store: Store, cfg: Config, now: float) -> None:
    """The original service's probe_events_missing_*_share gauges, from the store, per dataset.

    Events younger than MISSING_GRACE_SECONDS are left out: they may still be on
    their way, and counting them would make a healthy pipeline look lossy.
    """
    until = now - cfg.missing_grace_seconds
    for ds in cfg.datasets:
        for name, window in metrics.MISSING_SHARE_WINDOWS.items():
            missing, accepted = store.missing_share(ds.name, until - window, until)
            metrics.missing_share[name].labels(ds.name).set(missing / accepted if accepted else 0.0)


def report_judged(ds: str, counts: dict[EventState, int], timeout: float) -> None:
    lost, unobserved = counts[EventState.LOST], counts[EventState.UNOBSERVED]
    if lost:
        metrics.events_lost.labels(ds).inc(lost)
        log.warning(
            "%d event(s) of %s lost: missing after %gs", lost, ds, timeout, extra={"dataset": ds, "count": lost}
        )
    if unobserved:
        metrics.events_unobserved.labels(ds).inc(unobserved)
        log.info(
            "%d event(s) of %s unobserved: missing, but the listener was not subscribed to it all along",
            unobserved,
            ds,
            extra={"dataset": ds, "count": unobserved},
        )


def judge_loop(cfg: Config, stop: threading.Event) -> None:
    """Judge, count in-flight events, checkpoint and prune, on a connection of its own.

    Its own connection, so that a checkpoint (an fsync) never holds up the
    classification of arriving messages, whose receive times would then be late.
    """
    store = Store(cfg.db_path, create=False)
    timeouts = {ds.name: ds.loss_timeout_seconds for ds in cfg.datasets}
    first = cfg.datasets[0].name
    # As often as judging needs: an event is judged a quarter of its loss timeout late at most,
    # and the gauges move at least every JUDGE_MAX seconds (well within a scrape interval).
    period = max(0.05, min(JUDGE_MAX, min(timeouts.values()) / 4))
    next_prune = time.monotonic() + 60
    for name in timeouts:
        metrics.events_lost.labels(name)
        metrics.events_unobserved.labels(name)
        metrics.store_errors.labels(name, StoreOperation.JUDGE)  # present from the start
    reported: str | None = None
    while not stop.is_set():
        began = time.monotonic()
        try:
            next_prune = judge_round(store, cfg, timeouts, next_prune)
        except sqlite3.Error as exc:  # keep judging; the next round retries the same rows
            metrics.count_store_error(first, StoreOperation.JUDGE, exc)
        except Exception:
            log.exception("judgement round failed")
        metrics.judge_round.observe(time.monotonic() - began)
        problem = store.vanished()
        if problem != reported:
            if problem:
                log.error("%s; restart the stack (its /readyz says so)", problem)
            reported = problem
        stop.wait(period)
    store.close()


def judge_round(store: Store, cfg: Config, timeouts: dict[str, float], next_prune: float) -> float:
    """One round: judge, count in flight, checkpoint, and prune when `next_prune` (monotonic) has
    come; returns when the next prune is due."""
    judged = store.judge_overdue(
        time.time(), timeouts, cfg.loss_timeout_seconds, time.monotonic(), cfg.subscription_fresh_seconds()
    )
    for ds, counts in judged.items():
        report_judged(ds, counts, timeouts.get(ds, cfg.loss_timeout_seconds))
    open_events = store.in_flight()
    for name in timeouts:
        metrics.in_flight.labels(name).set(open_events.get(name, 0))
    set_missing_shares(store, cfg, time.time())
    store.checkpoint()
    if time.monotonic() < next_prune:
        return next_prune
    removed = store.prune(time.time() - cfg.retention_seconds)
    if removed:
        log.info("pruned %d events older than %gs", removed, cfg.retention_seconds)
    return time.monotonic() + PRUNE_EVERY
