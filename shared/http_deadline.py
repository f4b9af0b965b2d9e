"""Total deadlines for HTTP requests made with requests (and so python-keycloak).

requests and urllib3 apply their timeouts to each socket operation, so a peer that
drips a byte at a time never times out. A guarded adapter's connections are tracked
per thread, and `http_deadline` shuts them when its Watchdog fires. A module of its
own so that the listener, which makes no HTTP requests, never imports requests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.deadline import Watchdog, shut

_tracked = threading.local()


@contextlib.contextmanager
def http_deadline(seconds: float) -> Iterator[Watchdog]:
    """A total deadline for the HTTP requests this thread makes through a guarded session."""
    sockets: list[socket.socket] = []
    lock = threading.Lock()

    def shut_all() -> None:
        with lock:
            for sock in sockets:
                shut(sock)

    def track(sock: socket.socket) -> None:
        with lock:
            sockets.append(sock)
            if dog.fired:
                shut(sock)

    dog = Watchdog(seconds, shut_all)
    _tracked.track = track
    try:
        with dog:
            yield dog
    finally:
        _tracked.track = None


def _track(sock: socket.socket | None) -> None:
    track = getattr(_tracked, "track", None)
    if track is not None and sock is not None:
        track(sock)


class _GuardedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _track(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)  # a reused keep-alive connection
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _track(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)
        super().request(*args, **kwargs)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def guard(adapter: HTTPAdapter) -> HTTPAdapter:
    """Make an adapter's connections visible to http_deadline (its other settings are kept)."""
    adapter.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return adapter
