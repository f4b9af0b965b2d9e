"""The periodic judgement: overdue events become lost or unobserved, from the store alone.

It runs in the listener because only the listener knows it is alive and
subscribed; it works from the store, so a restart resumes exactly where the
previous process stopped and nothing is judged twice.
"""

from __future__ import annotations

import logging
import threading
import time

from shared import metrics
from shared.config import Config
from shared.store import Store

log = logging.getLogger("listener")

PRUNE_EVERY = 600.0


def judge_loop(cfg: Config, stop: threading.Event) -> None:
    """Judge, count in-flight events, checkpoint and prune, on a connection of its own.

    Its own connection, so that a checkpoint (an fsync) never holds up the
    classification of arriving messages, whose receive times would then be late.
    """
    store = Store(cfg.db_path)
    ds = cfg.dataset_id
    lost, unobserved = metrics.events_lost.labels(ds), metrics.events_unobserved.labels(ds)
    in_flight = metrics.in_flight.labels(ds)
    period = min(1.0, cfg.loss_timeout_seconds / 4)
    next_prune = time.monotonic() + 60
    while not stop.is_set():
        try:
            counts = store.judge_overdue(time.time(), cfg.loss_timeout_seconds)
            if counts["lost"]:
                lost.inc(counts["lost"])
                log.warning("%d event(s) lost: missing after %gs", counts["lost"], cfg.loss_timeout_seconds)
            if counts["unobserved"]:
                unobserved.inc(counts["unobserved"])
                log.info(
                    "%d event(s) unobserved: missing, but the listener was not subscribed all along",
                    counts["unobserved"],
                )
            in_flight.set(store.in_flight())
            store.checkpoint()
            if time.monotonic() >= next_prune:
                removed = store.prune(time.time() - cfg.retention_seconds)
                if removed:
                    log.info("pruned %d events older than %gs", removed, cfg.retention_seconds)
                next_prune = time.monotonic() + PRUNE_EVERY
        except Exception:  # keep judging; the next round retries the same rows
            log.exception("judgement round failed")
        stop.wait(period)
    store.close()
