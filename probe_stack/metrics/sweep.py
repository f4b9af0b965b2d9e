"""Finding processes that died and left live gauges behind, at most once a second.

prometheus_client keeps a `live*` gauge file per pid until someone marks the pid
dead; the supervisord eventlistener does that on every exit, but it can miss one
(BACKOFF events carry no pid, its buffer can fill), so the metrics program sweeps too.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
from dataclasses import dataclass, field

LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")
SWEEP_EVERY = 1.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def dead_pids(metrics_dir: str) -> set[int]:
    """Pids that left live-gauge files (regular files only) behind and no longer exist."""
    pids = set()
    for name in os.listdir(metrics_dir):
        match = LIVE_GAUGE_FILE.match(name)
        if match and _regular(os.path.join(metrics_dir, name)) and not pid_alive(int(match.group(1))):
            pids.add(int(match.group(1)))
    return pids


def remove_live_gauges(metrics_dir: str, pid: int) -> None:
    """prometheus_client's mark_process_dead, but for regular files only (it would fail on a
    directory of that name, and must never follow a link)."""
    for name in os.listdir(metrics_dir):
        match = LIVE_GAUGE_FILE.match(name)
        path = os.path.join(metrics_dir, name)
        if match and int(match.group(1)) == pid and _regular(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


@dataclass
class SweepClock:
    """Rate limit of the sweep: scrapes can come in bursts, the directory listing is not free."""

    every: float = SWEEP_EVERY
    last: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def due(self, mono: float) -> bool:
        """True at most once per `every` seconds (and for the first call); claims the sweep."""
        with self._lock:
            if self.last is not None and mono - self.last < self.every:
                return False
            self.last = mono
            return True
