"""What every probe process does the same way at start and at stop.

Signals: SIGTERM/SIGINT are blocked in every thread and collected by the main
thread with sigtimedwait, so no Python signal handler ever runs. A handler that
interrupts a metric update deadlocks prometheus_client's non-reentrant lock
(../shared/runtime-notes.md), and one that sets a threading.Event can deadlock too.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from shared import config as config_mod
from shared import log as log_mod

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
VERSION = "0.1.0"


def start_process(name: str) -> config_mod.Config:
    """Load config (exit 2 with one line on error), block stop signals, set up logging and metrics dir."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        cfg = config_mod.load()
    except config_mod.ConfigError as exc:
        print(f"probe {name}: config error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    log_mod.setup(name, cfg.log_format, cfg.log_level, cfg.secrets())
    prepare_metrics_dir(cfg.metrics_dir)
    if cfg.xray_enabled:
        logging.getLogger(name).warning("AWS_XRAY_SDK_ENABLED is set, but X-Ray tracing is not built in; ignored")
    return cfg


def prepare_metrics_dir(path: str) -> None:
    """Point prometheus_client at the shared directory; must run before it is first imported."""
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(path).resolve())


def wait_for_stop(stop: threading.Event, alive: Callable[[], bool], poll: float = 0.5) -> int | None:
    """Block until a stop signal arrives (returns it) or `alive()` turns false (returns None)."""
    while alive():
        sig = signal.sigtimedwait(STOP_SIGNALS, poll)
        if sig is not None:
            stop.set()
            return sig.si_signo
    stop.set()
    return None
