"""An HTTP server that gives a connection a thread only once its whole request head is in.

The metrics port faces whatever can reach it: idle, slow (slowloris) and bloated clients must
cost no thread, no memory beyond a bound, and none of the slots the scrapes need.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("metrics")

# A scrape is one short request, sent whole as soon as the connection opens. So a connection
# gets no thread and no slot until its whole request head has arrived: the waiting ones are
# read without blocking by one thread, and each must deliver its head within REQUEST_TIMEOUT
# of its arrival (a whole-request deadline: a byte now and then does not extend it), in at
# most MAX_HEAD_BYTES and MAX_HEADER_LINES. At most MAX_WAITING wait (MAX_WAITING_PER_CLIENT
# from one address; the oldest goes first), and MAX_CONNECTIONS are served at once (at most
# half of them to one address), each answer written within WRITE_TIMEOUT. So neither idle,
# slow (slowloris) nor bloated clients cost threads, memory or the slots scrapes need.
REQUEST_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_HEAD_BYTES = 16384
MAX_HEADER_LINES = 64
MAX_CONNECTIONS = 32
MAX_WAITING = 256
MAX_WAITING_PER_CLIENT = 32
REFUSAL_LOG_EVERY = 60.0


class Refusal(StrEnum):
    """Why a connection was closed before it was served."""

    TIMEOUT = "request not complete in time"
    TOO_LARGE = "request head too large"
    TOO_MANY_HEADERS = "too many header lines"
    CROWDED = "too many waiting connections"
    BUSY = "no free slot"


class Head(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    TOO_LARGE = "too_large"
    TOO_MANY_HEADERS = "too_many_headers"


def head_state(data: bytes) -> Head:
    """Whether `data` holds a whole request head within the limits (pure: the watcher's decision)."""
    ends = [(i, len(mark)) for mark in (b"\r\n\r\n", b"\n\n") if (i := data.find(mark)) >= 0]
    end = min(i + n for i, n in ends) if ends else -1  # bare LF line ends, as http.server accepts them
    head = data if end < 0 else data[:end]
    if head.count(b"\n") > MAX_HEADER_LINES + 1:
        return Head.TOO_MANY_HEADERS
    if len(head) > MAX_HEAD_BYTES:
        return Head.TOO_LARGE
    return Head.INCOMPLETE if end < 0 else Head.COMPLETE


@dataclass
class Waiting:
    deadline: float
    address: tuple[str, int]
    data: bytearray = field(default_factory=bytearray)


_ANSWERS = {
    Refusal.TIMEOUT: b"408 Request Timeout",
    Refusal.TOO_LARGE: b"431 Request Header Fields Too Large",
    Refusal.TOO_MANY_HEADERS: b"431 Request Header Fields Too Large",
    Refusal.BUSY: b"503 Service Unavailable",
}


class BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that gives a connection a thread only once its whole request head is in."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        super().__init__(address, handler)
        self._limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._serving: Counter[str] = Counter()  # by client address, under _serving_lock
        self._serving_lock = threading.Lock()
        self._heads: dict[socket.socket, bytes] = {}
        self._arrivals: queue.SimpleQueue[tuple[socket.socket, tuple[str, int]]] = queue.SimpleQueue()
        self._waiting: dict[socket.socket, Waiting] = {}
        self._refused: Counter[Refusal] = Counter()
        self._refusals_logged = 0.0
        self._selector = selectors.DefaultSelector()
        # A new connection wakes the watcher at once (a scrape must not wait for a poll).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="http-wait", daemon=True)
        self._watcher.start()

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        self._arrivals.put((request, client_address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def server_close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._watcher.join(2)
        super().server_close()

    def take_head(self, sock: socket.socket) -> bytes:
        """The request head read for `sock` by the watcher (the handler reads it from memory)."""
        return self._heads.pop(sock, b"")

    def _refuse(self, sock: socket.socket, why: Refusal) -> None:
        """Close a connection not served, with a short answer where one helps, counted; logged at
        most once per REFUSAL_LOG_EVERY (a flood must not flood the log)."""
        self._waiting.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        answer = _ANSWERS.get(why)
        if answer:
            with contextlib.suppress(OSError):
                sock.setblocking(False)
                sock.send(b"HTTP/1.0 " + answer + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        self.shutdown_request(sock)
        self._refused[why] += 1
        now = time.monotonic()
        if now - self._refusals_logged >= REFUSAL_LOG_EVERY:
            self._refusals_logged = now
            counts = ", ".join(f"{reason.value}: {n}" for reason, n in sorted(self._refused.items()))
            log.warning("closed connections without serving them (%s)", counts)
            self._refused.clear()

    def _arrive(self, sock: socket.socket, address: tuple[str, int]) -> None:
        mine = [s for s, w in self._waiting.items() if w.address[0] == address[0]]
        if len(mine) >= MAX_WAITING_PER_CLIENT:
            self._refuse(min(mine, key=lambda s: self._waiting[s].deadline), Refusal.CROWDED)
        if len(self._waiting) >= MAX_WAITING:
            self._refuse(min(self._waiting, key=lambda s: self._waiting[s].deadline), Refusal.CROWDED)
        sock.setblocking(False)
        self._waiting[sock] = Waiting(time.monotonic() + REQUEST_TIMEOUT, address)
        self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        waiting = self._waiting[sock]
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._waiting.pop(sock)
            self._selector.unregister(sock)
            self.shutdown_request(sock)
            return
        waiting.data += chunk
        state = head_state(bytes(waiting.data))
        if state is Head.INCOMPLETE:
            return
        if state is not Head.COMPLETE:
            self._refuse(sock, Refusal.TOO_LARGE if state is Head.TOO_LARGE else Refusal.TOO_MANY_HEADERS)
            return
        client = waiting.address[0]
        with self._serving_lock:
            crowded = self._serving[client] >= max(1, self._limit // 2)
            if not crowded and self._slots.acquire(blocking=False):
                self._serving[client] += 1
            else:
                crowded = True
        if crowded:
            self._refuse(sock, Refusal.BUSY)
            return
        self._waiting.pop(sock)
        self._selector.unregister(sock)
        self._heads[sock] = bytes(waiting.data)
        threading.Thread(target=self._serve, args=(sock, waiting.address), daemon=True).start()

    def _watch(self) -> None:
        """Read the waiting connections' request heads; hand the complete ones to a handler thread."""
        while not self._closed.is_set():
            while not self._arrivals.empty():
                self._arrive(*self._arrivals.get())
            # No poll: new connections and close() wake the selector through the socketpair, so
            # it waits only for the earliest deadline of a waiting connection, or for ever.
            deadlines = [w.deadline for w in self._waiting.values()]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, _ in self._selector.select(timeout=timeout):
                self._ready(key.fileobj)
            now = time.monotonic()
            for sock in [s for s, w in self._waiting.items() if w.deadline < now]:
                self._refuse(sock, Refusal.TIMEOUT)

    def _ready(self, sock: object) -> None:
        """One socket the selector found readable: the wake-up pair, or a waiting connection."""
        if sock is self._wake_r:
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        elif sock in self._waiting:
            self._read(sock)

    def _serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        try:
            sock.setblocking(True)
            self.finish_request(sock, address)
        except Exception:
            self.handle_error(sock, address)
        finally:
            self._heads.pop(sock, None)
            self.shutdown_request(sock)
            with self._serving_lock:
                self._serving[address[0]] -= 1
                if self._serving[address[0]] <= 0:
                    del self._serving[address[0]]
            self._slots.release()
