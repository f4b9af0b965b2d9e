"""The metrics directory: one stack's, locked for its life, emptied at its start, writable by it alone.

prometheus_client writes one file per process and metric kind there, and the
metrics program serves whatever it finds. So two stacks on one directory (the
default for two configurations in one directory) would wipe and swap each
other's numbers, and a directory others can write would let them add files that
count as ours. The directory is therefore held with an OS lock (flock on the
directory itself, released by the kernel when the stack dies) and must belong to
us and not be writable by others. A new stack must start from an empty
directory (docs/runtime.md); emptying a directory is dangerous, so it is done only
to a directory the probe created and marked, and only to the metric files in it;
anything else there is refused, never deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

from shared.dir_lock import DirBusy, DirUnsafe, DirUnusable, hold_dir

MARKER = ".dataplatform-probe-metrics"
MARKER_TEXT = "This directory holds dataplatform-probe's metric files; they are deleted at every stack start.\n"
HOLDER_PREFIX = "in use by: "
# prometheus_client's files (`<kind>_<pid>.db`) and metric_archive's archives (`<kind>_archive.db`).
METRIC_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_(\d+|archive)\.db$")
# What a fold of metric_archive leaves while it works (its JOURNAL and PENDING names, not imported
# here: that module imports prometheus_client, which must wait for PROMETHEUS_MULTIPROC_DIR).
FOLD_FILE = re.compile(r"^(archive\.journal(\.new)?|(counter|histogram|summary|gauge_[a-z]+)_archive\.db\.new)$")


def ours(name: str) -> bool:
    """Whether a file name is one the probe writes into the metrics directory (removed at every start)."""
    return bool(METRIC_FILE.match(name) or FOLD_FILE.match(name))


class MetricsDirError(Exception):
    """The directory cannot be used; str() is the one line shown to the operator."""


class MetricsDirBusy(MetricsDirError):
    """Another stack holds the directory."""


def mode_problem(mode: int, owner: int, uid: int) -> str | None:
    """Why a metrics directory with this mode and owner could hold another user's files, or None."""
    if owner != uid:
        return "belongs to another user"
    if mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(mode):o})"
    return None


def _holder(path: Path) -> str:
    """Who holds the directory, as its marker says (bounded read, never through a link)."""
    with contextlib.suppress(OSError):
        fd = os.open(path / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            text = os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)
        for line in text.splitlines():
            if line.startswith(HOLDER_PREFIX):
                return line.removeprefix(HOLDER_PREFIX)
    return "unknown"


def hold(path: Path) -> int:
    """Create the directory (private) or check an existing one, and lock it for the stack's life.

    Returns the descriptor to keep open (not inherited). Nothing in the directory is changed.
    Raises MetricsDirBusy when another stack holds it, MetricsDirError when it is not usable.
    """
    try:
        return hold_dir(path, lambda info: mode_problem(info.st_mode, info.st_uid, os.geteuid()))
    except DirUnusable as exc:
        raise MetricsDirError(f"PROMETHEUS_MULTIPROC_DIR={path} {exc}; point it at a new directory") from None
    except DirUnsafe as exc:
        raise MetricsDirError(
            f"PROMETHEUS_MULTIPROC_DIR={path} {exc}: others could add metric files that count as the probe's; "
            "point it at a directory only you can write"
        ) from None
    except DirBusy:
        raise MetricsDirBusy(
            f"another stack already uses the metrics directory {path} ({_holder(path)}); "
            "give this one its own PROMETHEUS_MULTIPROC_DIR"
        ) from None


def refusal(entries: dict[str, os.DirEntry]) -> str | None:
    """Why a directory with these entries may not be emptied (the rest of the line after its
    name), or None: only the probe's own metric files beside its marker may go."""
    names = sorted(entries)
    foreign = [
        name for name in names if name != MARKER and not (ours(name) and entries[name].is_file(follow_symlinks=False))
    ]
    if foreign:
        return (
            f" holds files that are not the probe's metrics (e.g. {foreign[0]}); "
            "it is emptied at every start, so point it at a new or empty directory"
        )
    if names and MARKER not in names:
        return f" was not created by the probe (no {MARKER} in it); point it at a new or empty directory"
    if MARKER in entries and not entries[MARKER].is_file(follow_symlinks=False):
        return f": its {MARKER} is not a plain file; remove it"
    return None


def reset(path: Path, holder: str = "") -> None:
    """Create the directory, or empty a directory of ours of its metric files, touching nothing else.

    `holder` (the stack's pid, store and start) is written into the marker, for a second stack
    refused by the lock to name.
    """
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise MetricsDirError(f"PROMETHEUS_MULTIPROC_DIR={path} is not a directory; point it at a new directory")
    marker_text = MARKER_TEXT + (f"{HOLDER_PREFIX}{holder}\n" if holder else "")
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        (path / MARKER).write_text(marker_text)
        return
    entries = {entry.name: entry for entry in os.scandir(path)}
    names = sorted(entries)
    problem = refusal(entries)
    if problem:
        raise MetricsDirError(f"PROMETHEUS_MULTIPROC_DIR={path}{problem}")
    for name in names:
        if name != MARKER:
            (path / name).unlink(missing_ok=True)
    fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as marker:
        marker.write(marker_text)
