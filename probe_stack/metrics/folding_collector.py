"""The multiprocess metrics, with dead processes' files folded into archives first.

prometheus_client's MultiProcessCollector reads every file of the directory at every
scrape, and every restart of a program leaves its files behind (its counts must go on
counting): after a month of restarts the scrape read hundreds of files. At each scrape the
dead processes' files are folded into one archive per kind (`metric_archive`), so a scrape
reads the living processes' files and the archives, whatever the count of restarts. The
merging and the sums are prometheus_client's own (its `_read_metrics` and
`_accumulate_metrics`), and the archives are files of its own format.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import CollectorRegistry

from probe_stack.metrics.metric_archive import fold_dead
from probe_stack.metrics.metrics_dir import METRIC_FILE
from probe_stack.metrics.sweep import pid_alive

log = logging.getLogger("metrics")


class FoldingCollector(MultiProcessCollector):
    def __init__(self, registry: CollectorRegistry | None, path: str) -> None:
        super().__init__(registry, path)
        self._lock = threading.Lock()  # a fold and a read never overlap: no count is seen twice
        self._skipped: set[str] = set()
        self._fold_failed: str | None = None

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

    def _fold(self) -> None:
        """Fold the dead processes' files; a failure (a full disk) leaves them to be read as they are."""
        try:
            folded = fold_dead(Path(self._path), pid_alive)
        except (OSError, RuntimeError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            if problem != self._fold_failed:
                log.warning("metrics directory: dead processes' files not folded (%s); read as they are", problem)
            self._fold_failed = problem
            return
        if folded:
            log.debug("folded %d metric files of dead processes into the archives", folded)
        self._fold_failed = None

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            self._fold()
            metrics = self._read_metrics(self.metric_files())
        return self._accumulate_metrics(metrics, True)
