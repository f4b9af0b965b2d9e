"""Total deadlines and bounded answers for HTTP requests made with requests (and so python-keycloak).

requests and urllib3 apply their timeouts to each socket operation, so a peer that
drips a byte at a time never times out, and name resolution (getaddrinfo, in C) has
no timeout at all: a DNS server that never answers holds a call for the resolver's
own retries (20 s and more). A guarded adapter's connections are tracked per thread,
and `http_deadline` shuts them when its Watchdog fires; their names are resolved on a
small pool of threads, waited for only until the deadline. A module of its own so
that the listener, which makes no HTTP requests, never imports requests.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError
from urllib3.util.connection import allowed_gai_family

from shared.deadline import Watchdog, shut
from shared.resolve import resolve

_tracked = threading.local()


class Cause(StrEnum):
    """What went wrong below HTTP, as an operator would name it."""

    DNS = "dns"  # the host's name did not resolve (or not within the deadline)
    REFUSED = "refused"  # nothing listens at the address
    TLS = "tls"  # the TLS handshake or the certificate failed
    TIMEOUT = "timeout"  # the deadline passed
    CONNECTION = "connection"  # any other failure of the connection (reset, cut short, unreachable)


class AnswerTooLarge(Exception):
    """An answer read through a BoundedAdapter passed its size bound."""


class AnswerTooSlow(Exception):
    """An answer read through a BoundedAdapter was still arriving at the deadline."""


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, its causes and contexts, and the `reason` urllib3 wraps inside its own errors."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 32:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nested, BaseException):
                todo.append(nested)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))


def cause(exc: BaseException, fired: bool = False) -> Cause:
    """The cause of a failed request, from its exception (pure: tests feed it exceptions).

    `fired`: the request's deadline watchdog shut its sockets, so a read cut short is a timeout.
    """
    found = list(chain(exc))
    if any(isinstance(e, (NameResolutionError, socket.gaierror)) for e in found):
        return Cause.DNS  # our resolver gives up at the deadline with a gaierror: still the name's fault
    if fired:  # whatever the cut made the read raise (a TLS socket shut mid-record, say)
        return Cause.TIMEOUT
    if any(isinstance(e, (ssl.SSLError, requests.exceptions.SSLError)) for e in found):
        return Cause.TLS
    if any(_refused(e) for e in found):
        return Cause.REFUSED
    if any(isinstance(e, (TimeoutError, requests.Timeout, AnswerTooSlow)) for e in found):
        return Cause.TIMEOUT
    return Cause.CONNECTION


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED


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
    _tracked.due = time.monotonic() + max(0.0, seconds)
    try:
        with dog:
            yield dog
    finally:
        _tracked.track = None
        _tracked.due = None


def remaining() -> float | None:
    """Seconds left of this thread's http_deadline, or None outside one."""
    due = getattr(_tracked, "due", None)
    return None if due is None else due - time.monotonic()


def _track(sock: socket.socket | None) -> None:
    track = getattr(_tracked, "track", None)
    if track is not None and sock is not None:
        track(sock)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _GuardedMixin:
    """Names resolved within the deadline; every socket visible to http_deadline."""

    _dns_host: str
    port: int

    def _new_conn(self) -> socket.socket:
        host = self._dns_host
        if _is_address(host):
            return super()._new_conn()  # type: ignore[misc]
        try:
            # on the listener's bounded pool: one set of threads a DNS outage can hold, not two
            addresses = resolve(host, self.port, remaining(), allowed_gai_family())
        except socket.gaierror as exc:
            raise NameResolutionError(host, self, exc) from exc  # type: ignore[arg-type]
        # Each address in turn, as urllib3 itself would, without a second (unbounded) lookup.
        last: BaseException | None = None
        try:
            for address in addresses:
                left = remaining()
                if last is not None and left is not None and left <= 0:
                    break  # each address has its own connect timeout: the deadline ends the list
                self._dns_host = address
                try:
                    return super()._new_conn()  # type: ignore[misc]
                except (ConnectTimeoutError, OSError) as exc:  # NewConnectionError is a ConnectTimeoutError
                    last = exc
        finally:
            self._dns_host = host
        if last is None:
            raise NameResolutionError(host, self, socket.gaierror(socket.EAI_NONAME, "no address"))  # type: ignore[arg-type]
        raise last

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _track(self.sock)  # type: ignore[attr-defined]

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)  # type: ignore[attr-defined]  # a reused keep-alive connection
        super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def guard(adapter: HTTPAdapter) -> HTTPAdapter:
    """Make an adapter's connections visible to http_deadline (its other settings are kept)."""
    adapter.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return adapter


READ_CHUNK = 16384


def read_bounded(response: requests.Response, limit: int) -> bytes:
    """A response's body, at most `limit` bytes on the wire and after decompression, read by the
    deadline of this thread's http_deadline (checked between reads, as the watchdog only cuts
    reads that block: a peer that streams fast never blocks). Raises AnswerTooLarge or AnswerTooSlow."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLarge(f"the answer declares {declared} bytes (at most {limit} taken)")
    raw = response.raw
    body = bytearray()
    while True:
        left = remaining()
        if left is not None and left <= 0:
            raise AnswerTooSlow("the answer was still arriving at the deadline")
        chunk = raw.read(READ_CHUNK, decode_content=True)
        if not chunk:  # urllib3 returns nothing only at the body's end
            break
        body += chunk
        if len(body) > limit or raw.tell() > limit:
            raise AnswerTooLarge(f"the answer passed {limit} bytes")
    return bytes(body)


class BoundedAdapter(HTTPAdapter):
    """An adapter whose answers are read by read_bounded, for a client (python-keycloak) that reads
    them whole with `response.content`: the body is read here, bounded, before the client sees it."""

    def __init__(self, limit: int, **kwargs: Any) -> None:
        self.limit = limit
        super().__init__(**kwargs)
        guard(self)

    def send(self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, stream=True, **kwargs)
        try:
            response._content = read_bounded(response, self.limit)
            response._content_consumed = True
        except BaseException:
            response.raw.close()  # never back into the pool half read
            raise
        response.raw.release_conn()
        return response
