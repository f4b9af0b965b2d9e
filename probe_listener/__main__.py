"""`python -m probe_listener`: start the process, run the listener's threads until told to stop.

One subscription thread per dataset, each reconnecting on its own, and one judge for all.
"""

from __future__ import annotations

import logging
import threading

from shared import log as log_mod
from shared import process as process_mod
from shared.exits import ExitStatus
from shared.store import Store

# A thread that wants the interpreter lock waits up to this long for a busy one to hand it
# over, at each of its blocking calls (several per event): 1 ms instead of 5 keeps one
# dataset's permitted noise from adding up on another's latency.
SWITCH_INTERVAL = 0.001


def close_dangling(store: Store, log: logging.Logger) -> None:
    """Close the subscription intervals a previous run left open, at their last heartbeat."""
    closed = store.close_dangling_subscriptions()
    if closed:
        log.info("closed %d subscription interval(s) left open by a previous run at their last heartbeat", closed)


def main() -> int:
    process = process_mod.start("listener", SWITCH_INTERVAL, on_open=close_dangling)
    if isinstance(process, ExitStatus):
        return process
    # Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR, set by start.
    from probe_listener.judge import judge_loop
    from probe_listener.receiver import Receiver
    from probe_listener.subscription import Subscription

    cfg, store, app_id, log = process.cfg, process.store, process.app_id, process.log
    threads = [threading.Thread(target=judge_loop, args=(cfg, process.stop), name="judge")]
    subscriptions = []
    for ds in cfg.datasets:
        receiver = Receiver(cfg, ds, store, app_id, process.tracer, cfg.siblings(ds))
        subscription = Subscription(cfg, ds, store, receiver.handle, process.stop)
        subscriptions.append(subscription)
        threads.append(threading.Thread(target=subscription.run, name=f"subscription-{ds.name}"))
        log.info(
            "listening as app_id=%s dataset=%s loss timeout %gs",
            app_id,
            ds.name,
            ds.loss_timeout_seconds,
            extra={"app_id": app_id, "dataset": ds.name},
        )
    sig = process_mod.run_until_stopped(process, threads, threads, interrupts=[s.interrupt for s in subscriptions])
    log_mod.flush_repeats()
    log.info("stopped")
    return ExitStatus.OK if sig is not None else ExitStatus.FATAL


if __name__ == "__main__":
    raise SystemExit(main())
