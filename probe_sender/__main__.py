"""`python -m probe_sender`: wire the sender's parts together and run until told to stop."""

from __future__ import annotations

import logging
import sys
import threading

import requests

from shared import lifecycle
from shared.exits import ExitStatus
from shared.store import StoreError


def main() -> int:
    cfg = lifecycle.start_process("sender")
    # The schedule thread must get the GIL back promptly from busy post threads (default: 5 ms).
    sys.setswitchinterval(0.0005)
    # Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR, set by start_process.
    from probe_sender.collector import Collector
    from probe_sender.sender import Sender
    from shared import metrics
    from shared.auth import TokenProvider
    from shared.deadline import guard
    from shared.store import Store
    from shared.tracing import make_tracer

    log = logging.getLogger("sender")
    try:
        store = Store(cfg.db_path, create=False)
        app_id = store.app_id()
    except StoreError as exc:
        log.error("%s", exc)
        return ExitStatus.STORE
    metrics.build_info.labels(lifecycle.version(), app_id).set(1)
    tracer = make_tracer(cfg.xray_enabled, cfg.xray_service_name, cfg.xray_sampling_rules)
    tokens = None
    if cfg.auth_enabled:
        tokens = TokenProvider(
            cfg.keycloak_server,
            cfg.keycloak_realm,
            cfg.client_id,
            cfg.client_secret,
            cfg.token_refresh_margin_seconds,
            on_request=lambda result: metrics.token_requests.labels(cfg.dataset_id, result).inc(),
            timeout=cfg.post_timeout_seconds,
            trace=tracer.token_request,
        )
    session = requests.Session()
    # Proxy settings are read from the environment once, not on every post: requests' per-request
    # lookup (proxies, netrc) cost half of the sender's CPU at high rates (bench/).
    session.proxies.update(requests.utils.get_environ_proxies(cfg.collector_endpoint()))
    session.trust_env = False
    session.max_redirects = 0  # never follow one with a token; the collector treats a 3xx as an error
    # Guarded: each post ends by its deadline in all, even against a peer that drips bytes.
    session.mount("http://", guard(requests.adapters.HTTPAdapter(pool_maxsize=cfg.post_concurrency)))
    session.mount("https://", guard(requests.adapters.HTTPAdapter(pool_maxsize=cfg.post_concurrency)))
    collector = Collector(cfg.collector_endpoint(), tokens, cfg.post_timeout_seconds, session, tracer)
    sender = Sender(cfg, store, collector, app_id, tracer)
    log.info(
        "sending to %s every %gs as app_id=%s dataset=%s/%s",
        cfg.collector_endpoint(),
        cfg.event_interval_seconds,
        app_id,
        cfg.dataset_id,
        cfg.dataset_version,
    )

    crashed = threading.Event()

    def work() -> None:
        try:
            sender.back_off_after_fail_out()
            sender.warm_up()
            sender.wait_for_listener()
            sender.run()
        except Exception:  # e.g. the store stayed locked: exit non-zero so supervisord restarts us
            log.exception("the schedule stopped unexpectedly")
            crashed.set()

    worker = threading.Thread(target=work, name="schedule")
    worker.start()
    sig = lifecycle.wait_for_stop(sender.stop, worker.is_alive)
    if sig is not None:
        log.info("signal %d: stopping; in-flight posts finish within %.0fs", sig, cfg.post_timeout_seconds)
    worker.join()
    store.close()
    if sender.fail_outs.failed_out:
        return ExitStatus.FAILED_OUT
    if crashed.is_set():
        return ExitStatus.FATAL
    log.info("stopped")
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(main())
