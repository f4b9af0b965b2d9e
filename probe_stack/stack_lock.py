"""One stack per store: an OS lock beside the store file, held for the stack's whole life.

Two stacks on one store would count each other's events as duplicates, wipe each
other's metrics and rewrite each other's control credentials. flock() is released
by the kernel when its holder dies, however it dies, so a crashed stack never
blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class StackRunning(Exception):
    """Another stack holds the store; str() names it."""


def lock_path(db_path: str) -> Path:
    store = Path(db_path).resolve()
    return store.with_name(store.name + ".lock")


def acquire(db_path: str, config_path: str) -> int:
    """Take the store's lock or raise StackRunning; returns the descriptor to keep open (not inherited)."""
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
