"""What every probe process does the same way at start and at stop.

Signals: SIGTERM/SIGINT are blocked in every thread and collected by the main
thread with sigtimedwait, so no Python signal handler ever runs. A handler that
interrupts a metric update deadlocks prometheus_client's non-reentrant lock
(docs/runtime.md), and one that sets a threading.Event can deadlock too.
SIGHUP (a closed terminal, or an operator expecting a reload) is collected the same
way and ignored with one log line: nothing is reloaded, and it never kills a program.

No program writes a core dump: one would hold the client secret, the webhook token
and the JWT. RLIMIT_CORE is 0 (inherited by everything `probe run` starts) and the
programs that hold secrets are not dumpable (PR_SET_DUMPABLE 0: no core, and no other
process of the same user may read their memory or environment).
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from shared import config as config_mod
from shared import log as log_mod
from shared.exits import ExitStatus
from shared.parent import die_with_parent

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
IGNORED_SIGNALS = {signal.SIGHUP}
PR_SET_DUMPABLE = 4  # <linux/prctl.h>

log = logging.getLogger("lifecycle")


def no_core_dumps(dumpable: bool = False) -> None:
    """No core file from this process or any it starts; unless `dumpable`, not dumpable at all."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not dumpable and sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def load_config_or_exit(prog: str = "probe", for_reading: bool = False) -> config_mod.Config:
    """Load the configuration; on error print the one-line reason and exit with ExitStatus.CONFIG.

    `for_reading`: a command that only reads what a stack left, which needs no secret."""
    try:
        return config_mod.load(for_reading=for_reading)
    except config_mod.ConfigError as exc:
        line = f"{prog}: config error: {exc}"
        if os.environ.get("LOG_FORMAT", "").strip() == "json":
            line = log_mod.json_line("ERROR", prog, line)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(ExitStatus.CONFIG) from None


def start_process(name: str) -> config_mod.Config:
    """Load config (exit 2 with one line on error), block stop signals, set up logging and metrics dir."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | IGNORED_SIGNALS)
    no_core_dumps()
    die_with_parent()
    cfg = load_config_or_exit(f"probe {name}")
    log_mod.setup(name, cfg.log_format, cfg.log_level, cfg.secrets())
    prepare_metrics_dir(cfg.metrics_dir)
    return cfg


def prepare_metrics_dir(path: str) -> None:
    """Point prometheus_client at the shared directory; must run before it is first imported."""
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(path).resolve())


def wait_for_stop(stop: threading.Event, alive: Callable[[], bool], poll: float = 2.0) -> int | None:
    """Block until a stop signal arrives (returns it) or `alive()` turns false (returns None).

    Only SIGTERM and SIGINT count: after SIGSTOP/SIGCONT, CPython 3.11's sigtimedwait
    can return a bogus signal number, which must not stop the process.
    """
    while alive():
        info = signal.sigtimedwait(STOP_SIGNALS | IGNORED_SIGNALS, poll)
        if info is not None and info.si_signo in IGNORED_SIGNALS:
            log.info("SIGHUP ignored: nothing is reloaded; restart the program to apply changes")
        elif info is not None and info.si_signo in STOP_SIGNALS:
            stop.set()
            return info.si_signo
    stop.set()
    return None
