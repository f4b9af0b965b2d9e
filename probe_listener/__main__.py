"""`python -m probe_listener`: wire the listener's parts together and run until told to stop.

One subscription thread per dataset, each reconnecting on its own, and one judge for all.
"""

from __future__ import annotations

import logging
import sys
import threading

from shared import lifecycle
from shared import log as log_mod
from shared.exits import ExitStatus
from shared.store import StoreError
from shared.version import VERSION


def main() -> int:
    cfg = lifecycle.start_process("listener")
    # Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR, set by start_process.
    from probe_listener.judge import judge_loop
    from probe_listener.receiver import Receiver
    from probe_listener.subscription import Subscription
    from shared import metrics
    from shared.store import Store
    from shared.tracing import make_tracer

    log = logging.getLogger("listener")
    # A thread that wants the interpreter lock waits up to this long for a busy one to hand it
    # over, at each of its blocking calls (several per event): 1 ms instead of 5 keeps one
    # dataset's permitted noise from adding up on another's latency.
    sys.setswitchinterval(0.001)
    try:
        store = Store(cfg.db_path, create=False)
        app_id = store.app_id()
        closed = store.close_dangling_subscriptions()
    except StoreError as exc:
        log.error("%s", exc)
        return ExitStatus.STORE
    if closed:
        log.info("closed %d subscription interval(s) left open by a previous run at their last heartbeat", closed)
    metrics.build_info.labels(VERSION, app_id).set(1)
    metrics.describe_instance(cfg)
    stop = threading.Event()
    tracer = make_tracer(cfg.xray_enabled, cfg.xray_service_name, cfg.xray_sampling_rules)
    threads = [threading.Thread(target=judge_loop, args=(cfg, stop), name="judge")]
    subscriptions = []
    for ds in cfg.datasets:
        receiver = Receiver(cfg, ds, store, app_id, tracer, cfg.siblings(ds))
        subscription = Subscription(cfg, ds, store, receiver.handle, stop)
        subscriptions.append(subscription)
        threads.append(threading.Thread(target=subscription.run, name=f"subscription-{ds.name}"))
        log.info(
            "listening as app_id=%s dataset=%s loss timeout %gs",
            app_id,
            ds.name,
            ds.loss_timeout_seconds,
            extra={"app_id": app_id, "dataset": ds.name},
        )
    for thread in threads:
        thread.start()
    sig = lifecycle.wait_for_stop(stop, lambda: all(t.is_alive() for t in threads))
    if sig is not None:
        log.info("signal %d: stopping", sig)
    for subscription in subscriptions:
        subscription.interrupt()
    for thread in threads:
        thread.join()
    store.close()
    log_mod.flush_repeats()
    log.info("stopped")
    return ExitStatus.OK if sig is not None else ExitStatus.FATAL


if __name__ == "__main__":
    raise SystemExit(main())
