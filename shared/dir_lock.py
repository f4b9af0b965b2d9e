"""Hold a directory for one stack: create it private or check it, open it without a link, lock it.

The run directory and the metrics directory are each held by one stack for its life. flock()
on the directory's own descriptor is released by the kernel however its holder dies, so a
crashed stack never blocks the next one; opening with O_NOFOLLOW means a link planted in its
place is refused, never followed into someone else's directory.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


class DirUnusable(Exception):
    """It cannot be created or is not a directory; str() says which, without the path."""


class DirUnsafe(Exception):
    """It is a directory that the check refused (another owner, not private); str() is the check's word."""


class DirBusy(Exception):
    """Another holder has the directory locked."""


def hold_dir(path: Path, problem: Callable[[os.stat_result], str | None]) -> int:
    """Create `path` (mode 700, parents too) unless it exists, open it and lock it; the descriptor
    to keep open (not inherited). An existing directory is never changed, only checked by
    `problem` (its fstat: a reason to refuse, or None)."""
    try:
        if not path.is_symlink():
            path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DirUnusable(f"cannot be created ({exc.strerror})") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise DirUnusable("is not a directory") from None
    why = problem(os.fstat(fd))
    if why:
        os.close(fd)
        raise DirUnsafe(why)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirBusy from None
    return fd
