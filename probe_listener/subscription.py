"""Staying subscribed: connect, ping, detect dead connections, reconnect, record intervals.

Each connection is recorded in the store as an interval (connected from / to), and
loss is judged against those intervals; liveness.py decides when an interval ends.
Frames are read one at a time (continuations assembled by frames.py, bounded in size), so
the loop keeps its pings and heartbeats however a peer splits or drips a message.
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
from urllib.parse import urlsplit

import websocket
from websocket._abnf import ABNF

from probe_listener.budget import Budget
from probe_listener.classify import MalformedReason
from probe_listener.connect import ConnectFailure, Failed, describe, open_within, problem, subscription_url
from probe_listener.frames import Assembler, BoundedFrames, FrameTooLarge, close_code
from probe_listener.liveness import Due, Liveness
from shared import metrics
from shared.config import Config, Dataset, url_host
from shared.deadline import shut
from shared.log import DatasetLog
from shared.store import Note, NoteOwner, Store, StoreOperation, StoreWriteFailed, note_key

log = logging.getLogger("listener")

FIRST_RETRY = 0.1
STABLE_AFTER = 10.0  # a connection that lived this long resets the backoff
HEARTBEAT_MAX = 5.0  # the store hears that a connection lives at least this often
MAX_BLOCK = 1.0  # the longest one read may block: stop() also shuts the socket, so this is a fallback
MESSAGE_OPCODES = (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT)

# (payload, binary, receive time, its monotonic time) -> whether it was the first arrival of one of the
# probe's own events (anything else, duplicates included, is noise)
FrameHandler = Callable[[bytes, bool, float, float], bool | None]


class DisconnectReason(StrEnum):
    """Why a subscription ended (the `reason` label of probe_websocket_disconnects)."""

    SERVER_CLOSE = "server_close"
    PONG_TIMEOUT = "pong_timeout"
    ERROR = "error"
    SHUTDOWN = "shutdown"
    TOO_LARGE = "too_large"  # a message above MAX_MESSAGE_BYTES, in one frame or in continuations: given up


# How a connection ended: (reason, last proof of life, its monotonic time).
Ending = tuple[DisconnectReason, float, float]


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
        self.host = urlsplit(dataset.websocket_url).hostname or "?"  # for log lines: never the URL (its token)
        self.rng = random.Random()
        self._note = Note(store, note_key(NoteOwner.LISTENER, dataset.name))  # the subscription's problem, for /readyz
        ds = dataset.name
        self.log = DatasetLog(log, ds)
        self._ws: websocket.WebSocket | None = None  # the current connection, for interrupt()
        self._connected = metrics.ws_connected.labels(ds)
        self._state_connected = metrics.connection_state.labels(ds, "connected")
        self._state_disconnected = metrics.connection_state.labels(ds, "disconnected")
        self._connects = metrics.ws_connects.labels(ds)
        metrics.precreate(metrics.ws_disconnects, ds, DisconnectReason)
        metrics.precreate(metrics.ws_connect_failures, ds, ConnectFailure)
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
                metrics.ws_connect_failures.labels(self.dataset.name, ConnectFailure.ERROR).inc()
                lived = None
            if self.stop.is_set():
                break
            attempt = 0 if lived is not None and lived >= STABLE_AFTER else attempt + 1
            delay = backoff_delay(max(0, attempt - 1), self.cfg.reconnect_max_seconds, self.rng)
            self.log.info("reconnecting %s in %.2fs (attempt %d)", self.dataset.name, delay, attempt + 1)
            self.stop.wait(delay)

    def _connect(self) -> websocket.WebSocket | None:
        """Open the subscription within CONNECT_TIMEOUT in all (name resolution included), following
        no redirect; on failure count it under its reason and put it on record for /readyz."""
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        ws.frame_buffer = BoundedFrames(ws._recv, True, self.cfg.max_message_bytes)
        self._ws = ws
        try:
            open_within(ws, self.url, self.dataset.websocket_url)
        except Failed as failed:
            self._failed(failed)
            return None
        return ws

    def _failed(self, failed: Failed) -> None:
        reason = failed.reason
        metrics.ws_connect_failures.labels(self.dataset.name, reason).inc()
        where = url_host(self.dataset.websocket_url) or self.host
        text = problem(reason, failed.detail, where, self.dataset.name, self.dataset.id)
        if self._note.record(text):
            self.log.error("cannot subscribe to dataset %s: %s", self.dataset.id, text, extra={"reason": reason})
        else:
            self.log.warning("connect failed: %s", text, extra={"reason": reason})

    def _connect_and_listen(self) -> float | None:
        """One connection's life; returns how long it lived, or None if it never opened."""
        ws = self._connect()
        if ws is None:
            return None
        opened, opened_mono = time.time(), time.monotonic()
        try:
            # An interval a failed write left open ends at its last heartbeat, not now.
            self.store.close_dangling_subscriptions(self.dataset.name)
            sub_id = self.store.subscription_opened(self.dataset.name, opened, opened_mono)
        except BaseException:  # not on record (the store full): closed, or the platform delivers to nobody
            ws.shutdown()
            raise
        self._note.clear()
        self._set_connected(True)
        self._connects.inc()
        self.log.info("subscribed to %s dataset=%s", self.host, self.dataset.id)  # never the URL: its secrets
        reason, ended, ended_mono = DisconnectReason.ERROR, opened, opened_mono
        try:
            reason, ended, ended_mono = self._listen(ws, sub_id, opened, opened_mono)
        finally:
            self._set_connected(False)
            metrics.ws_disconnects.labels(self.dataset.name, reason).inc()
            with contextlib.suppress(Exception):  # already gone; nothing to tell
                ws.close(timeout=1)
            self.store.subscription_closed(sub_id, ended, ended_mono)
        self.log.info("subscription to %s ended: %s after %.1fs", self.dataset.name, reason, ended - opened)
        return ended - opened

    def _listen(self, ws: websocket.WebSocket, sub_id: int, opened: float, opened_mono: float) -> Ending:
        """Read frames until the connection ends; returns how it ended."""
        cfg = self.cfg
        # A heartbeat well within the freshness that readiness and the sender ask of it.
        heartbeat = min(HEARTBEAT_MAX, (cfg.ping_interval_seconds + cfg.pong_timeout_seconds) / 2)
        alive = Liveness.opened(cfg.ping_interval_seconds, cfg.pong_timeout_seconds, heartbeat, opened, opened_mono)
        reader: BoundedFrames = ws.frame_buffer
        message = Assembler(cfg.max_message_bytes)
        reader.pending = message.pending
        noise = Budget.full(time.monotonic())
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                ended = self._tend(ws, alive, sub_id, now, opened_mono)
                if ended is not None:
                    return ended
                # Block until the next thing is due, not on a fixed poll: an idle subscription wakes
                # for its pings and heartbeats only.
                block = min(MAX_BLOCK, max(0.005, alive.wait_for(time.monotonic()) + 0.001))
                pause = noise.pause(now)
                if pause > 0:  # over its share of CPU on noise: stop reading, TCP holds the peer back
                    self.stop.wait(min(pause, block))
                    continue
                cpu = time.thread_time()
                frame = self._receive(ws, reader, block)
                if frame is None:
                    continue  # nothing within the block, or stopped
                if not isinstance(frame, ABNF):
                    return frame
                ended, ours = self._take(ws, frame, alive, message)
                if ended is not None:
                    return ended
                if not ours:  # every frame but our events is noise: control frames too (a ping flood)
                    noise.spend(time.thread_time() - cpu, time.monotonic())
            return DisconnectReason.SHUTDOWN, time.time(), time.monotonic()
        finally:
            reader.deadline = time.monotonic()  # the close that follows must not wait on a dripping peer

    def _tend(
        self, ws: websocket.WebSocket, alive: Liveness, sub_id: int, now: float, opened_mono: float
    ) -> Ending | None:
        """What is due before the next read: give up on a dead connection, ping, or write a heartbeat."""
        due = alive.due(now)
        if due is Due.DEAD:
            self.log.warning("no pong within %.1fs: connection is dead", self.cfg.pong_timeout_seconds)
            return DisconnectReason.PONG_TIMEOUT, alive.last_alive, alive.last_alive_mono or opened_mono
        if due is Due.PING:
            if not self._write(ws.ping, b"") and not self.stop.is_set():
                return DisconnectReason.ERROR, time.time(), time.monotonic()
            alive.pinged(now)
        elif due is Due.HEARTBEAT:
            self.store.subscription_alive(sub_id, alive.last_alive, alive.last_alive_mono)
            alive.heartbeat_written(now)
        return None

    def _receive(self, ws: websocket.WebSocket, reader: BoundedFrames, block: float) -> ABNF | Ending | None:
        """The next frame, how the connection ended, or None: nothing within `block`, or stopped."""
        ws.settimeout(block)
        reader.deadline = time.monotonic() + block
        try:
            return ws.recv_frame()
        except websocket.WebSocketTimeoutException:
            return None
        except FrameTooLarge as exc:
            return self._too_large(ws, exc)
        except (websocket.WebSocketConnectionClosedException, OSError, websocket.WebSocketException) as exc:
            if self.stop.is_set():  # interrupt() shut the socket to wake us
                return None
            self.log.warning("connection lost: %s", describe(exc))
            return DisconnectReason.ERROR, time.time(), time.monotonic()

    def _take(
        self, ws: websocket.WebSocket, frame: ABNF, alive: Liveness, message: Assembler
    ) -> tuple[Ending | None, bool]:
        """One frame: (how the connection ended, if it did; whether it was a first arrival of ours)."""
        received_at, received_mono = time.time(), time.monotonic()
        opcode = frame.opcode
        if opcode in MESSAGE_OPCODES:
            alive.frame(received_at, received_mono)
            try:
                whole = message.add(frame)
            except FrameTooLarge as exc:
                return self._too_large(ws, exc), False
            except websocket.WebSocketProtocolException as exc:
                self.log.warning("protocol error: %s; reconnecting", exc)
                return (DisconnectReason.ERROR, received_at, received_mono), False
            return None, whole is not None and bool(self.on_frame(whole[0], whole[1], received_at, received_mono))
        if opcode == ABNF.OPCODE_PING:
            alive.frame(received_at, received_mono)
            if not self._write(ws.pong, frame.data[:125]) and not self.stop.is_set():
                return (DisconnectReason.ERROR, received_at, received_mono), False
        elif opcode == ABNF.OPCODE_PONG:
            alive.pong(received_at, received_mono)
        elif opcode == ABNF.OPCODE_CLOSE:
            self.log.info("server closed the connection (code %s)", close_code(frame.data))
            return (DisconnectReason.SERVER_CLOSE, received_at, received_mono), False
        return None, False

    def _write(self, send: Callable[[bytes], object], payload: bytes) -> bool:
        """Send a control frame; False (logged) when it cannot be written within the read's timeout:
        a peer that reads nothing (say, pings without reading the pongs) ends the connection
        under a reason, never the loop with an exception."""
        try:
            send(payload)
            return True
        except (OSError, websocket.WebSocketException) as exc:
            if not self.stop.is_set():
                self.log.warning("connection lost: cannot write to it (%s)", describe(exc))
            return False

    def _too_large(self, ws: websocket.WebSocket, exc: Exception) -> Ending:
        metrics.events_malformed.labels(self.dataset.name, MalformedReason.TOO_LARGE).inc()
        self.log.warning("refused %s; reconnecting", exc)
        ws.shutdown()  # no closing handshake: that would read the rest of the message
        return DisconnectReason.TOO_LARGE, time.time(), time.monotonic()
