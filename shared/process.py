"""The skeleton both programs stand on: open the store, say who this instance is, run the
threads until a stop signal, and stop them all.

The sender and the listener differ in their threads and in how they judge their own end,
not in how they start or stop, so that part is written once here.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared import lifecycle
from shared.config import Config
from shared.exits import ExitStatus
from shared.store import Store, StoreError
from shared.tracing import NoTracer, make_tracer
from shared.version import VERSION


@dataclass(frozen=True)
class Process:
    """A started program: its settings, its store and app_id, its tracer and its stop event."""

    cfg: Config
    store: Store
    app_id: str
    tracer: NoTracer
    log: logging.Logger
    stop: threading.Event = field(default_factory=threading.Event)


def start(
    name: str, switch_interval: float, on_open: Callable[[Store, logging.Logger], None] | None = None
) -> Process | ExitStatus:
    """Load the settings (exit 2 on error), take the signals, open the store and export who this
    instance is. ExitStatus.STORE, logged in one line, when the store cannot be used; `on_open`
    runs on the store as it opens, under the same rule."""
    cfg = lifecycle.start_process(name)
    # How long a thread that wants the interpreter lock waits for a busy one to hand it over.
    sys.setswitchinterval(switch_interval)
    # Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR, set by start_process.
    from shared import metrics

    log = logging.getLogger(name)
    try:
        store = Store(cfg.db_path, create=False)
        app_id = store.app_id()
        if on_open is not None:
            on_open(store, log)
    except StoreError as exc:
        log.error("%s", exc)
        return ExitStatus.STORE
    metrics.build_info.labels(VERSION, app_id).set(1)
    metrics.describe_instance(cfg)
    tracer = make_tracer(cfg.xray_enabled, cfg.xray_service_name, cfg.xray_sampling_rules)
    return Process(cfg, store, app_id, tracer, log)


def run_until_stopped(
    process: Process,
    threads: Sequence[threading.Thread],
    watched: Sequence[threading.Thread],
    stopping: str = "",
    interrupts: Sequence[Callable[[], None]] = (),
) -> int | None:
    """Start the threads and block until a stop signal (returned) or the end of a `watched` one
    (None); then stop, call `interrupts` to wake what a stop event alone does not, join all and close the
    store. `stopping` ends the line that logs the signal."""
    for thread in threads:
        thread.start()
    sig = lifecycle.wait_for_stop(process.stop, lambda: all(t.is_alive() for t in watched))
    if sig is not None:
        process.log.info("signal %d: stopping%s", sig, stopping)
    process.stop.set()
    for interrupt in interrupts:
        interrupt()
    for thread in threads:
        thread.join()
    process.store.close()
    return sig
