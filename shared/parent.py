"""Dying with the parent: so that a kill -9 of supervisord (or of `probe run`) leaves no orphans.

A module of its own, with nothing but the standard library, because the supervisord
eventlistener needs it too and should load nothing else.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask the kernel to send `sig` when the parent dies (Linux only; elsewhere nothing happens).

    `parent` is the pid the caller expects as its parent (by default, the one it has now).
    If the parent changed, it died before the request took effect, and we go at once. The
    parent is compared by pid, never with 1: in a container, `probe run` *is* pid 1.
    """
    expected = os.getppid() if parent is None else parent
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != expected:
        os.kill(os.getpid(), sig)


def child_dies_with_us(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for Popen: the child dies with the process that starts it."""
    return functools.partial(die_with_parent, sig, os.getpid())
