"""The multiprocess metrics, reading each dead process's files once instead of at every scrape.

prometheus_client's MultiProcessCollector reads every file of the directory at every
scrape. Each restart of a program leaves its files behind (its counts must go on
counting), so the scrape slowed down with restarts: 22 ms after 100. A dead process's
files never change again, so their samples are read once and kept until the set of dead
files changes, and only the living processes' files are read at each scrape. The merging
and the sums are prometheus_client's own (its `_read_metrics` and `_accumulate_metrics`).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import CollectorRegistry

from probe_stack.metrics_dir import METRIC_FILE
from probe_stack.sweep import pid_alive

log = logging.getLogger("metrics")


def file_pid(path: str) -> int | None:
    """The pid in a metrics file's name (`counter_123.db`, `gauge_max_123.db`), or None."""
    stem = os.path.basename(path)[: -len(".db")]
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


class DeadFilesCachedCollector(MultiProcessCollector):
    def __init__(self, registry: CollectorRegistry | None, path: str) -> None:
        super().__init__(registry, path)
        self._lock = threading.Lock()
        self._dead_files: frozenset[str] | None = None
        self._dead: dict[str, Metric] = {}
        self._skipped: set[str] = set()

    def metric_files(self) -> list[str]:
        """The directory's metric files: regular files with prometheus_client's names only.

        Anything else (a sub-directory called `counter_2.db`, a symlink, a stray name) would
        make the whole scrape fail; it is left out, and logged once per name.
        """
        paths = []
        with os.scandir(self._path) as entries:
            for entry in entries:
                if not entry.name.endswith(".db"):
                    continue
                try:
                    regular = stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
                except FileNotFoundError:  # a live gauge removed meanwhile by a sweep
                    continue
                if regular and METRIC_FILE.match(entry.name):
                    paths.append(entry.path)
                elif entry.name not in self._skipped:
                    self._skipped.add(entry.name)
                    log.warning("metrics directory: skipping %s, not a metric file of prometheus_client", entry.name)
        return paths

    def collect(self) -> Iterable[Metric]:
        live, dead = [], []
        alive: dict[int, bool] = {}
        for path in self.metric_files():
            pid = file_pid(path)
            if pid is not None and pid not in alive:
                alive[pid] = pid_alive(pid)
            (dead if pid is not None and not alive[pid] else live).append(path)
        with self._lock:
            if self._dead_files != frozenset(dead):
                self._dead = self._read_metrics(sorted(dead))
                self._dead_files = frozenset(dead)
            cached = self._dead
        fresh = self._read_metrics(live)
        merged: dict[str, Metric] = {}
        for name in cached.keys() | fresh.keys():
            old, new = cached.get(name), fresh.get(name)
            base = new or old
            assert base is not None
            metric = Metric(base.name, base.documentation, base.type)
            if hasattr(base, "_multiprocess_mode"):
                metric._multiprocess_mode = base._multiprocess_mode
            # New lists: the accumulation replaces `samples`, and the cache must stay as read.
            metric.samples = [*(old.samples if old else ()), *(new.samples if new else ())]
            merged[name] = metric
        return self._accumulate_metrics(merged, True)
