"""Scratch directories (`probe check`'s store and metrics): gone however the command ends.

A normal end, an exception, Ctrl-C and SIGTERM remove the directory on the way out
(`probe check` turns SIGTERM into the same unwinding as Ctrl-C). SIGKILL leaves it
behind, so every start first sweeps the leftovers of earlier ones: only directories
with our prefix that we own, that are private (as mkdtemp makes them), and whose
recorded owner process (pid and start time, so a reused pid does not count) is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHECK_PREFIX = "probe-check-"
OWNER_FILE = ".owner"
OWNER_MAX_BYTES = 256


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def owner_alive(text: str) -> bool:
    """Whether the owner `pid start` recorded in a scratch directory still runs (pure but for /proc)."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return True  # not a record of ours: never judge it dead
    return process_start(int(parts[0])) == parts[1]


def _owner_record(path: Path) -> str | None:
    """The owner record of a scratch directory, read only as a plain file of ours, or None."""
    try:
        fd = os.open(path / OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        return os.read(fd, OWNER_MAX_BYTES).decode(errors="replace")
    finally:
        os.close(fd)


def sweep(prefix: str = CHECK_PREFIX, base: Path | None = None) -> list[Path]:
    """Remove the scratch directories of dead owners left in `base` (the temporary directory); the removed."""
    base = base or Path(tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError), os.scandir(base) as entries:
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
                continue
            record = _owner_record(Path(entry.path))
            if record is None or owner_alive(record):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)  # fd-based: never follows a link inside
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def directory(prefix: str = CHECK_PREFIX) -> Iterator[Path]:
    """A new private directory, removed on the way out; leftovers of killed runs swept first."""
    sweep(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        (path / OWNER_FILE).write_text(f"{os.getpid()} {process_start(os.getpid())}\n")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
