"""Staying subscribed: connect, ping, detect dead connections, reconnect, record intervals.

Each connection is recorded in the store as an interval (connected from / to), and
loss is judged against those intervals; liveness.py decides when an interval ends.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from urllib.parse import urlencode

import websocket
from websocket._abnf import frame_buffer

from probe_listener.classify import MalformedReason
from probe_listener.liveness import Due, Liveness
from shared import metrics
from shared.config import Config, Dataset
from shared.deadline import Watchdog, shut
from shared.log import DatasetLog
from shared.store import Note, Store, StoreOperation, StoreWriteFailed

log = logging.getLogger("listener")

FIRST_RETRY = 0.1
STABLE_AFTER = 10.0  # a connection that lived this long resets the backoff
HEARTBEAT_MAX = 5.0  # the store hears that a connection lives at least this often
MAX_BLOCK = 1.0  # the longest one read may block: stop() also shuts the socket, so this is a fallback
CONNECT_TIMEOUT = 10.0

FrameHandler = Callable[[bytes, bool, float], None]


class DisconnectReason(StrEnum):
    """Why a subscription ended (the `reason` label of probe_websocket_disconnects)."""

    SERVER_CLOSE = "server_close"
    PONG_TIMEOUT = "pong_timeout"
    ERROR = "error"
    SHUTDOWN = "shutdown"
    TOO_LARGE = "too_large"  # a frame above MAX_MESSAGE_BYTES: refused unread, so the connection is given up


# Connect failures are labelled http_<status> (a refused handshake), or one of these.
CONNECT_ERROR = "error"
CONNECT_TIMEOUT_REASON = "timeout"
CONNECT_REDIRECT = "redirect"


class FrameTooLarge(websocket.WebSocketException):
    """A frame announced a payload above MAX_MESSAGE_BYTES; it is refused before it is read."""


class BoundedFrames(frame_buffer):
    """websocket-client's frame reader, refusing a frame by its announced length before reading it."""

    def __init__(self, recv_fn: Callable[[int], bytes], skip_utf8_validation: bool, max_bytes: int) -> None:
        super().__init__(recv_fn, skip_utf8_validation)
        self.max_bytes = max_bytes

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > self.max_bytes:
            raise FrameTooLarge(f"a frame of {self.length} bytes (limit {self.max_bytes})")


def subscription_url(ds: Dataset) -> str:
    query = urlencode({"dataset_id": ds.id, "webhook_token": ds.webhook_token})
    return f"{ds.websocket_url}{'&' if '?' in ds.websocket_url else '?'}{query}"


def backoff_delay(attempt: int, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with equal jitter; attempt 0 retries almost at once."""
    delay = min(cap, FIRST_RETRY * 2**attempt)
    return delay / 2 + rng.uniform(0, delay / 2)


class Subscription:
    def __init__(
        self, cfg: Config, dataset: Dataset, store: Store, on_frame: FrameHandler, stop: threading.Event
    ) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.store = store
        self.on_frame = on_frame
        self.stop = stop
        self.url = subscription_url(dataset)
        self.rng = random.Random()
        self._note = Note(store, f"listener:{dataset.name}")  # a problem of the subscription, for /readyz
        ds = dataset.name
        self.log = DatasetLog(log, ds)
        self._ws: websocket.WebSocket | None = None  # the current connection, for interrupt()
        self._connected = metrics.ws_connected.labels(ds)
        self._state_connected = metrics.connection_state.labels(ds, "connected")
        self._state_disconnected = metrics.connection_state.labels(ds, "disconnected")
        self._connects = metrics.ws_connects.labels(ds)
        metrics.precreate(metrics.ws_disconnects, ds, DisconnectReason)
        metrics.precreate(metrics.ws_connect_failures, ds, [CONNECT_ERROR, CONNECT_TIMEOUT_REASON])
        metrics.precreate(metrics.store_errors, ds, [StoreOperation.CLASSIFY, StoreOperation.SUBSCRIPTION])

    def interrupt(self) -> None:
        """After `stop` is set: wake the thread at once by shutting its socket (from another thread)."""
        ws = self._ws
        if ws is not None:
            shut(ws.sock)

    def _set_connected(self, connected: bool) -> None:
        self._connected.set(int(connected))
        self._state_connected.set(int(connected))
        self._state_disconnected.set(int(not connected))

    def run(self) -> None:
        """Reconnect forever (until stopped), with backoff between failed attempts."""
        self._set_connected(False)
        attempt = 0
        while not self.stop.is_set():
            try:
                lived = self._connect_and_listen()
            except StoreWriteFailed:  # counted where it happened
                lived = None
            except sqlite3.Error as exc:
                metrics.count_store_error(self.dataset.name, StoreOperation.SUBSCRIPTION, exc)
                lived = None
            except Exception:  # a bug must not end the subscription for good
                self.log.exception("subscription to %s failed; reconnecting", self.dataset.name)
                metrics.ws_connect_failures.labels(self.dataset.name, CONNECT_ERROR).inc()
                lived = None
            if self.stop.is_set():
                break
            attempt = 0 if lived is not None and lived >= STABLE_AFTER else attempt + 1
            delay = backoff_delay(max(0, attempt - 1), self.cfg.reconnect_max_seconds, self.rng)
            self.log.info("reconnecting %s in %.2fs (attempt %d)", self.dataset.name, delay, attempt + 1)
            self.stop.wait(delay)

    def _connect(self) -> websocket.WebSocket | None:
        """Open the subscription within CONNECT_TIMEOUT in all, following no redirect."""
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        ws.frame_buffer = BoundedFrames(ws._recv, True, self.cfg.max_message_bytes)
        self._ws = ws
        # The socket only exists once connect() has begun: fetch it when the deadline passes.
        dog = Watchdog(CONNECT_TIMEOUT, lambda: shut(ws.sock))
        try:
            with dog:
                # redirect_limit=0: the URL carries the webhook token, which no redirect target may see.
                ws.connect(self.url, timeout=CONNECT_TIMEOUT, redirect_limit=0)
            return ws
        except websocket.WebSocketBadStatusException as exc:
            reason = f"http_{exc.status_code}"
        except (OSError, websocket.WebSocketException) as exc:
            if dog.fired:
                reason = CONNECT_TIMEOUT_REASON
                self.log.warning("connect failed: no subscription within %.0fs", CONNECT_TIMEOUT)
            elif "Redirect" in str(exc):
                reason = CONNECT_REDIRECT
                self.log.warning("connect refused: the server redirects the subscription; not followed")
            else:
                reason = CONNECT_ERROR
                self.log.warning("connect failed: %s", exc)
        with contextlib.suppress(Exception):
            ws.close(timeout=0)
        metrics.ws_connect_failures.labels(self.dataset.name, reason).inc()
        if reason in ("http_400", "http_403", "http_404"):
            problem = (
                f"dataset {self.dataset.id} is not known to the subscription, "
                f"or the webhook token of {self.dataset.name} does not open it ({reason})"
            )
            if self._note.record(problem):
                self.log.error("%s", problem)
        elif reason.startswith("http_"):
            self.log.warning("connect refused: %s", reason)
        return None

    def _connect_and_listen(self) -> float | None:
        """One connection's life; returns how long it lived, or None if it never opened."""
        ws = self._connect()
        if ws is None:
            return None
        opened = time.time()
        # An interval a failed write left open ends at its last heartbeat, not now.
        self.store.close_dangling_subscriptions(self.dataset.name)
        sub_id = self.store.subscription_opened(self.dataset.name, opened)
        self._note.clear()
        self._set_connected(True)
        self._connects.inc()
        self.log.info("subscribed to %s dataset=%s", self.dataset.websocket_url, self.dataset.id)
        reason, ended = DisconnectReason.ERROR, opened
        try:
            reason, ended = self._listen(ws, sub_id, opened)
        finally:
            self._set_connected(False)
            metrics.ws_disconnects.labels(self.dataset.name, reason).inc()
            with contextlib.suppress(Exception):  # already gone; nothing to tell
                ws.close(timeout=1)
            self.store.subscription_closed(sub_id, ended)
        self.log.info("subscription to %s ended: %s after %.1fs", self.dataset.name, reason, ended - opened)
        return ended - opened

    def _listen(self, ws: websocket.WebSocket, sub_id: int, opened: float) -> tuple[DisconnectReason, float]:
        """Read frames until the connection ends; returns (reason, last proof of life)."""
        cfg = self.cfg
        # A heartbeat well within the freshness that readiness and the sender ask of it.
        heartbeat = min(HEARTBEAT_MAX, (cfg.ping_interval_seconds + cfg.pong_timeout_seconds) / 2)
        alive = Liveness.opened(
            cfg.ping_interval_seconds, cfg.pong_timeout_seconds, heartbeat, opened, time.monotonic()
        )
        while not self.stop.is_set():
            now = time.monotonic()
            due = alive.due(now)
            if due is Due.DEAD:
                self.log.warning("no pong within %.1fs: connection is dead", cfg.pong_timeout_seconds)
                return DisconnectReason.PONG_TIMEOUT, alive.last_alive
            if due is Due.PING:
                ws.ping()
                alive.pinged(now)
            elif due is Due.HEARTBEAT:
                self.store.subscription_alive(sub_id, alive.last_alive)
                alive.heartbeat_written(now)
            # Block until the next thing is due, not on a fixed poll: an idle subscription wakes
            # for its pings and heartbeats only.
            ws.settimeout(min(MAX_BLOCK, max(0.005, alive.wait_for(time.monotonic()) + 0.001)))
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                continue
            except FrameTooLarge as exc:
                metrics.events_malformed.labels(self.dataset.name, MalformedReason.TOO_LARGE).inc()
                self.log.warning("refused %s unread; reconnecting", exc)
                ws.shutdown()  # no closing handshake: that would read the rest of the frame
                return DisconnectReason.TOO_LARGE, time.time()
            except (websocket.WebSocketConnectionClosedException, OSError, websocket.WebSocketException) as exc:
                if self.stop.is_set():  # interrupt() shut the socket to wake us
                    break
                self.log.warning("connection lost: %s", exc)
                return DisconnectReason.ERROR, time.time()
            received_at = time.time()
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                alive.frame(received_at)
                self.on_frame(frame.data, opcode == websocket.ABNF.OPCODE_BINARY, received_at)
            elif opcode == websocket.ABNF.OPCODE_PONG:
                alive.pong(received_at)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
                self.log.info("server closed the connection (code %s)", code)
                return DisconnectReason.SERVER_CLOSE, received_at
        return DisconnectReason.SHUTDOWN, time.time()
