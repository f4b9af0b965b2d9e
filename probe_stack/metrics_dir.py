"""The metrics directory: emptied at every stack start, so it must be ours and hold only our files.

prometheus_client writes one file per process and metric kind there; a new stack
must start from an empty directory (docs/runtime.md). Emptying a directory is
dangerous, so it is done only to a directory the probe created and marked, and
only to the metric files in it; anything else there is refused, never deleted.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = ".dataplatform-probe-metrics"
MARKER_TEXT = "This directory holds dataplatform-probe's metric files; they are deleted at every stack start.\n"
METRIC_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_\d+\.db$")


class MetricsDirError(Exception):
    """The directory cannot be used; str() is the one line shown to the operator."""


def reset(path: Path) -> None:
    """Create the directory, or empty a directory of ours of its metric files, touching nothing else."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise MetricsDirError(f"PROMETHEUS_MULTIPROC_DIR={path} is not a directory; point it at a new directory")
    if not path.exists():
        path.mkdir(parents=True)
        (path / MARKER).write_text(MARKER_TEXT)
        return
    names = sorted(p.name for p in path.iterdir())
    foreign = [name for name in names if name != MARKER and not METRIC_FILE.match(name)]
    if foreign:
        raise MetricsDirError(
            f"PROMETHEUS_MULTIPROC_DIR={path} holds files that are not the probe's metrics (e.g. {foreign[0]}); "
            "it is emptied at every start, so point it at a new or empty directory"
        )
    if names and MARKER not in names:
        raise MetricsDirError(
            f"PROMETHEUS_MULTIPROC_DIR={path} was not created by the probe (no {MARKER} in it); "
            "point it at a new or empty directory"
        )
    for name in names:
        if name != MARKER:
            (path / name).unlink(missing_ok=True)
    (path / MARKER).write_text(MARKER_TEXT)
