"""One stack per store, per run directory and per metrics directory: OS locks held for the stack's life.

Two stacks on one store would count each other's events as duplicates, wipe each
other's metrics and rewrite each other's control credentials. flock() is released
by the kernel when its holder dies, however it dies, so a crashed stack never
blocks the next one. Every lock is taken before anything is written, so a stack
that is refused has changed nothing (not even the running one's supervisorctl.conf).
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

from shared.dir_lock import DirBusy, DirUnsafe, DirUnusable, hold_dir
from shared.store import check_store_path, make_store_dir, open_companion


class StackRunning(Exception):
    """Another stack holds the store or the run directory; str() names it."""


class RunDirError(Exception):
    """The run directory cannot be used; str() says why (without the path)."""


def lock_path(db_path: str) -> Path:
    store = Path(db_path).resolve()
    return store.with_name(store.name + ".lock")


def acquire(db_path: str, config_path: str) -> int:
    """Take the store's lock or raise StackRunning; returns the descriptor to keep open (not inherited).

    The lock file is truncated and rewritten, so it is opened only as a plain file of ours in a
    directory others cannot write (StoreError otherwise): never through a planted link.
    """
    path = lock_path(db_path)
    make_store_dir(path.parent)
    check_store_path(Path(db_path).resolve())
    fd = open_companion(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StackRunning(
            f"another stack already runs on the store {Path(db_path).resolve()} ({holder}); "
            "stop it first, or give this one another PROBE_DB_PATH"
        ) from None
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.pwrite(fd, f"pid {os.getpid()}, started {started}, config {config_path}\n".encode(), 0)
    return fd


def private_problem(info: os.stat_result, uid: int) -> str | None:
    """Why a directory (its lstat or fstat) is not a private directory of `uid`, or None."""
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != uid:
        return "belongs to another user"
    if info.st_mode & 0o7077:
        return f"is not private (mode {stat.S_IMODE(info.st_mode):o}; it must be 700)"
    return None


def hold_private_dir(path: Path) -> int:
    """Create `path` as a private directory, or check that it is one, and lock it; the descriptor.

    An existing directory is never chmod'ed: a shared one (such as /tmp, sticky and
    world-writable) must not be taken over, only refused (RunDirError). Another stack
    holding it raises StackRunning.
    """
    try:
        return hold_dir(path, lambda info: private_problem(info, os.geteuid()))
    except (DirUnusable, DirUnsafe) as exc:
        raise RunDirError(str(exc)) from None
    except DirBusy:
        raise StackRunning(
            f"another stack already uses the run directory {path}; give this one its own PROBE_RUN_DIR"
        ) from None
