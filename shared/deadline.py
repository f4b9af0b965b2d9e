"""Total deadlines for blocking network calls whose libraries only bound each read.

requests, python-keycloak and websocket-client apply their timeouts to every
socket read: a peer that drips one byte a second never trips them, and holds the
call (and whatever waits on it) for as long as it likes. A Watchdog shuts the
call's sockets down when its deadline passes; the blocked read then fails at
once, and the caller reports a timeout.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any


def shut(sock: socket.socket | None) -> None:
    """Make every blocked read on `sock` fail now, from any thread."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Alarms:
    """One thread for every watchdog of the process: a thread per call would cost more than the
    post it guards. It sleeps until the earliest deadline it knows of, and is woken only for a
    deadline earlier than that: a call that ends in time never wakes it, so under steady traffic
    it wakes about once per deadline period, not once per call."""

    def __init__(self) -> None:
        self._active: dict[int, tuple[float, Watchdog]] = {}
        self._wake = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake_at: float | None = None  # when the thread will look next; None: not before notified

    def add(self, due: float, dog: Watchdog) -> int:
        with self._wake:
            key = next(self._ids)
            self._active[key] = (due, dog)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            if self._wake_at is None or due < self._wake_at:
                self._wake_at = due
                self._wake.notify()
            return key

    def remove(self, key: int) -> None:
        with self._wake:
            self._active.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                expired = [k for k, (due, _) in self._active.items() if due <= now]
                dogs = [self._active.pop(k)[1] for k in expired]
                if not dogs:
                    self._wake_at = min((d for d, _ in self._active.values()), default=None)
                    self._wake.wait(None if self._wake_at is None else self._wake_at - now)
                    continue
            for dog in dogs:  # outside the lock: an action may take a moment
                dog._expire()


_alarms = _Alarms()


class Watchdog:
    """Runs `action` once if the `with` block is still running `seconds` after it began."""

    def __init__(self, seconds: float, action: Callable[[], Any]) -> None:
        self.fired = False
        self._seconds = max(0.0, seconds)
        self._action = action
        self._done = False
        self._lock = threading.Lock()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
        self._action()

    def __enter__(self) -> Watchdog:
        self._key = _alarms.add(time.monotonic() + self._seconds, self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        _alarms.remove(self._key)
