"""Folding dead processes' metric files into one archive file per kind of file.

Every restart of a program leaves its prometheus_client files behind, because its counts
must go on counting. After a month of restarts they were hundreds (3 to 4 a restart), and
every scrape read them all. A dead process's files never change again, so their values are
folded into `<kind>_archive.db` (counters and histograms summed, `max` gauges the larger,
`mostrecent` gauges the newer) and the files removed: the directory then holds the living
processes' files plus one archive per kind, whatever the count of restarts.

The archive is prometheus_client's own file format, which its collector reads like any
other file. A fold is crash-safe: the new archives are written beside the old ones, a
journal names what they replace, each archive is swapped in by one rename, and only then
are the dead files removed; `recover` finishes or undoes a fold that was cut short.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

# The kinds whose values can be folded without losing meaning. `live*` gauges are removed
# when their process dies (mark_process_dead); `all` gauges keep a pid label per process.
FOLDABLE = re.compile(r"^(counter|histogram|summary|gauge_max|gauge_min|gauge_mostrecent|gauge_sum)_(\d+)\.db$")
JOURNAL = "archive.journal"
PENDING = ".new"

Values = dict[str, tuple[float, float]]  # mmap key -> (value, timestamp)


def archive_name(kind: str) -> str:
    return f"{kind}_archive.db"


def merge(kind: str, into: Values, rows: Iterable[tuple[str, float, float]]) -> None:
    """Fold one file's (key, value, timestamp) rows into `into`, as the collector would add them up."""
    for key, value, stamp in rows:
        if key not in into:
            into[key] = (value, stamp)
            continue
        old, old_stamp = into[key]
        if kind == "gauge_max":
            into[key] = max((old, old_stamp), (value, stamp))
        elif kind == "gauge_min":
            into[key] = min((old, old_stamp), (value, stamp))
        elif kind == "gauge_mostrecent":
            into[key] = (value, stamp) if stamp >= old_stamp else (old, old_stamp)
        else:  # counter, histogram, summary, gauge_sum
            into[key] = (old + value, max(stamp, old_stamp))


def _read(path: Path) -> list[tuple[str, float, float]]:
    return [(k, v, t) for k, v, t, _ in MmapedDict.read_all_values_from_file(str(path))]


def _write(path: Path, values: Values) -> None:
    store = MmapedDict(str(path))
    try:
        for key, (value, stamp) in values.items():
            store.write_value(key, value, stamp)
    finally:
        store.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PENDING)  # a stray one is removed by recover()
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def recover(metrics_dir: Path) -> None:
    """Finish a fold whose archives were swapped in, undo one whose were not (see the module doc)."""
    journal = metrics_dir / JOURNAL
    if journal.is_file():
        plan: dict[str, list[str]] = json.loads(journal.read_text())
        for kind, dead in plan.items():
            pending = metrics_dir / (archive_name(kind) + PENDING)
            if pending.exists():  # not swapped in: the dead files still count, not the new archive
                pending.unlink()
            else:  # swapped in: the archive holds the dead files' values now
                for name in dead:
                    (metrics_dir / name).unlink(missing_ok=True)
        journal.unlink()
    for stray in metrics_dir.glob("*" + PENDING):  # written before the journal: never counted
        stray.unlink()


def dead_files(metrics_dir: Path, alive: Callable[[int], bool]) -> dict[str, list[str]]:
    """The foldable files of processes that no longer run, by kind (each pid asked once)."""
    plan: dict[str, list[str]] = {}
    pids: dict[int, bool] = {}
    for entry in os.scandir(metrics_dir):
        match = FOLDABLE.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(2))
        if pid not in pids:
            pids[pid] = alive(pid)
        if not pids[pid]:
            plan.setdefault(match.group(1), []).append(entry.name)
    return plan


def fold_dead(metrics_dir: Path, alive: Callable[[int], bool]) -> int:
    """Fold the files of processes that no longer run into the archives; the count of files removed.

    The caller keeps scrapes out while this runs (the metrics program's collector lock), so
    no scrape sees a dead file's values both in the archive and in the file.
    """
    recover(metrics_dir)
    plan = dead_files(metrics_dir, alive)
    if not plan:
        return 0
    for kind, dead in plan.items():
        values: Values = {}
        archive = metrics_dir / archive_name(kind)
        if archive.exists():
            merge(kind, values, _read(archive))
        for name in sorted(dead):
            merge(kind, values, _read(metrics_dir / name))
        _write(metrics_dir / (archive_name(kind) + PENDING), values)
    _atomic_text(metrics_dir / JOURNAL, json.dumps(plan))
    for kind in plan:
        os.replace(metrics_dir / (archive_name(kind) + PENDING), metrics_dir / archive_name(kind))
    recover(metrics_dir)  # removes the dead files and the journal
    return sum(len(dead) for dead in plan.values())
