"""Dying with the parent: so that a kill -9 of supervisord (or of `probe run`) leaves no orphans.

A module of its own, with nothing but the standard library, because the supervisord
eventlistener needs it too and should load nothing else.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` when the parent dies (Linux only; elsewhere nothing happens)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
