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
from shared.store import Store, StoreOperation

log = logging.getLogger("listener")

PRUNE_EVERY = 600.0


def set_missing_shares(store: Store, cfg: Config, now: float) -> None:
    """The original service's probe_events_missing_*_share gauges, from the store.

    Events younger than MISSING_GRACE_SECONDS are left out: they may still be on
    their way, and counting them would make a healthy pipeline look lossy.
    """
    until = now - cfg.missing_grace_seconds
    for name, window in metrics.MISSING_SHARE_WINDOWS.items():
        missing, accepted = store.missing_share(until - window, until)
        metrics.missing_share[name].labels(cfg.dataset_id).set(missing / accepted if accepted else 0.0)


def judge_loop(cfg: Config, stop: threading.Event) -> None:
    """Judge, count in-flight events, checkpoint and prune, on a connection of its own.

    Its own connection, so that a checkpoint (an fsync) never holds up the
    classification of arriving messages, whose receive times would then be late.
    """
    store = Store(cfg.db_path, create=False)
    ds = cfg.dataset_id
    lost, unobserved = metrics.events_lost.labels(ds), metrics.events_unobserved.labels(ds)
    in_flight = metrics.in_flight.labels(ds)
    period = min(1.0, cfg.loss_timeout_seconds / 4)
    next_prune = time.monotonic() + 60
    metrics.store_errors.labels(ds, StoreOperation.JUDGE)  # present from the start
    reported: str | None = None
    while not stop.is_set():
        try:
            counts = store.judge_overdue(time.time(), cfg.loss_timeout_seconds)
            if counts["lost"]:
                lost.inc(counts["lost"])
                log.warning(
                    "%d event(s) lost: missing after %gs",
                    counts["lost"],
                    cfg.loss_timeout_seconds,
                    extra={"dataset": ds, "count": counts["lost"]},
                )
            if counts["unobserved"]:
                unobserved.inc(counts["unobserved"])
                log.info(
                    "%d event(s) unobserved: missing, but the listener was not subscribed all along",
                    counts["unobserved"],
                    extra={"dataset": ds, "count": counts["unobserved"]},
                )
            in_flight.set(store.in_flight())
            set_missing_shares(store, cfg, time.time())
            store.checkpoint()
            if time.monotonic() >= next_prune:
                removed = store.prune(time.time() - cfg.retention_seconds)
                if removed:
                    log.info("pruned %d events older than %gs", removed, cfg.retention_seconds)
                next_prune = time.monotonic() + PRUNE_EVERY
        except sqlite3.Error as exc:  # keep judging; the next round retries the same rows
            metrics.count_store_error(ds, StoreOperation.JUDGE, exc)
        except Exception:
            log.exception("judgement round failed")
        problem = store.vanished()
        if problem != reported:
            if problem:
                log.error("%s; restart the stack (its /readyz says so)", problem)
            reported = problem
        stop.wait(period)
    store.close()
