"""`python -m probe_sender`: wire the sender's parts together and run until told to stop.

One schedule thread per dataset, sharing the store, the token and the HTTP connections.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from shared import lifecycle
from shared.exits import ExitStatus
from shared.store import StoreError
from shared.version import VERSION


def main() -> int:
    cfg = lifecycle.start_process("sender")
    # The schedule threads must get the GIL back promptly from busy post threads (default: 5 ms).
    sys.setswitchinterval(0.0005)
    # Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR, set by start_process.
    from probe_sender.fail_out import FailOutGroup, fail_out_delay
    from probe_sender.sender import Sender
    from probe_sender.wiring import collector_for, session_for, token_provider
    from shared import metrics
    from shared.auth import AuthError
    from shared.config import redact_url
    from shared.store import Store
    from shared.tracing import make_tracer

    log = logging.getLogger("sender")
    try:
        store = Store(cfg.db_path, create=False)
        app_id = store.app_id()
    except StoreError as exc:
        log.error("%s", exc)
        return ExitStatus.STORE
    metrics.build_info.labels(VERSION, app_id).set(1)
    metrics.describe_instance(cfg)
    tracer = make_tracer(cfg.xray_enabled, cfg.xray_service_name, cfg.xray_sampling_rules)
    tokens = token_provider(cfg, tracer)
    session = session_for(cfg)
    stop = threading.Event()
    fail_outs = FailOutGroup(
        cfg.max_consecutive_errors, [ds.name for ds in cfg.datasets], on_record=store.fail_outs()[0] > 0
    )
    senders = []
    for ds in cfg.datasets:
        collector = collector_for(cfg, ds, tokens, session, tracer)
        senders.append(Sender(cfg, ds, store, collector, app_id, fail_outs, stop, tracer))
        log.info(
            "sending to %s every %gs as app_id=%s dataset=%s (%s/%s)",
            redact_url(ds.collector_endpoint()),
            ds.interval_seconds,
            app_id,
            ds.name,
            ds.id,
            ds.version,
            extra={"app_id": app_id, "dataset": ds.name},
        )

    crashed = threading.Event()

    ready = threading.Event()

    def prepare() -> None:
        """After earlier fail-outs, wait (longer each time) before sending; then fetch the first token,
        whose first request is slow (imports, TLS) and would otherwise stall the first slots."""
        count, last_at = store.fail_outs()
        delay = fail_out_delay(count, last_at, time.time())
        if delay > 0:
            log.warning(
                "restart backoff: %d fail-out(s) in a row; waiting %.0fs before sending "
                "(it ends at the first successful post; a fresh `probe run` starts without it)",
                count,
                delay,
                extra={"count": count, "duration": delay},
            )
            stop.wait(delay)
        if tokens is not None and not stop.is_set():
            try:
                tokens.get()
            except AuthError as exc:
                log.warning("no token yet (%s); the first posts will retry", exc)
        ready.set()

    def work(sender: Sender) -> None:
        try:
            while not ready.wait(1.0) and starter.is_alive():
                pass
            sender.wait_for_listener()
            sender.run()
        except Exception:  # e.g. the store stayed locked: exit non-zero so supervisord restarts us
            log.exception("the schedule of %s stopped unexpectedly", sender.ds.name)
            crashed.set()
            stop.set()

    workers = [threading.Thread(target=work, args=(s,), name=f"schedule-{s.ds.name}") for s in senders]
    # In a thread of its own: the main thread must stay free to take the stop signal.
    starter = threading.Thread(target=prepare, name="prepare")
    for thread in [starter, *workers]:
        thread.start()
    sig = lifecycle.wait_for_stop(stop, lambda: all(w.is_alive() for w in workers))
    if sig is not None:
        log.info("signal %d: stopping; in-flight posts finish within %.0fs", sig, cfg.post_timeout_seconds)
    stop.set()
    for thread in [starter, *workers]:
        thread.join()
    store.close()
    if fail_outs.failed_out:
        return ExitStatus.FAILED_OUT
    if crashed.is_set():
        return ExitStatus.FATAL
    log.info("stopped")
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(main())
