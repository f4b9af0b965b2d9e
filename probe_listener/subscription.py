"""Staying subscribed: connect, ping, detect dead connections, reconnect, record intervals.

Each connection is recorded in the store as an interval (connected from / to), and
loss is judged against those intervals; liveness.py decides when an interval ends.
Frames are read one at a time (continuations assembled here, bounded in size), so the
loop keeps its pings and heartbeats however a peer splits or drips a message.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from urllib.parse import urlencode, urlsplit

import websocket
from websocket._abnf import ABNF, frame_buffer
from websocket._http import _ssl_socket, _tunnel
from websocket._url import get_proxy_info

from probe_listener.budget import Budget
from probe_listener.classify import MalformedReason
from probe_listener.liveness import Due, Liveness
from shared import metrics
from shared.config import Config, Dataset, url_host
from shared.deadline import Watchdog, shut
from shared.log import DatasetLog
from shared.resolve import ResolveTimeout, resolve
from shared.store import Note, NoteOwner, Store, StoreOperation, StoreWriteFailed, note_key

log = logging.getLogger("listener")

FIRST_RETRY = 0.1
STABLE_AFTER = 10.0  # a connection that lived this long resets the backoff
HEARTBEAT_MAX = 5.0  # the store hears that a connection lives at least this often
MAX_BLOCK = 1.0  # the longest one read may block: stop() also shuts the socket, so this is a fallback
CONNECT_TIMEOUT = 10.0

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


class ConnectFailure(StrEnum):
    """Why a connection attempt failed (the `reason` label of probe_websocket_connect_failures)."""

    DNS = "dns"  # the host (or the proxy's) does not resolve, or resolution did not answer in time
    REFUSED = "refused"  # nothing listens there (or a host or network unreachable)
    TLS = "tls"  # the TLS handshake failed: certificate, name, protocol
    TIMEOUT = "timeout"  # no subscription within CONNECT_TIMEOUT in all
    REJECTED = "rejected"  # the handshake answered 401 or 403: the webhook token does not open the dataset
    HTTP_4XX = "http_4xx"  # another 4xx: no such dataset (404), a bad request (400)
    HTTP_5XX = "http_5xx"
    REDIRECT = "redirect"  # a 3xx: never followed (the URL carries the webhook token)
    ERROR = "error"  # anything else (a proxy's refusal, a protocol error)


# The names before issue 24, kept for callers that still use them.
CONNECT_ERROR = ConnectFailure.ERROR
CONNECT_TIMEOUT_REASON = ConnectFailure.TIMEOUT
CONNECT_REDIRECT = ConnectFailure.REDIRECT


def handshake_failure(status: int) -> ConnectFailure:
    """What a refused handshake's HTTP status says."""
    if status in (401, 403):
        return ConnectFailure.REJECTED
    if 300 <= status < 400:
        return ConnectFailure.REDIRECT
    if 400 <= status < 500:
        return ConnectFailure.HTTP_4XX
    if 500 <= status < 600:
        return ConnectFailure.HTTP_5XX
    return ConnectFailure.ERROR


class Failed(Exception):
    """A connection attempt that failed, with its reason and a detail for people (no secret in it)."""

    def __init__(self, reason: ConnectFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FrameTooLarge(websocket.WebSocketException):
    """A message above MAX_MESSAGE_BYTES (announced by one frame, or by continuations adding up)."""


class BoundedFrames(frame_buffer):
    """websocket-client's frame reader, refusing a frame by its announced length before reading it
    (with the continuations before it counted in), and giving the loop back its thread at a
    deadline however slowly a peer drips a frame (what it read so far is kept for the next call)."""

    def __init__(self, recv_fn: Callable[[int], bytes], skip_utf8_validation: bool, max_bytes: int) -> None:
        super().__init__(self._recv_until_deadline, skip_utf8_validation)
        self._raw_recv = recv_fn
        self.max_bytes = max_bytes
        self.deadline: float | None = None  # monotonic; None: no deadline (the handshake, the close)
        self.pending: Callable[[], int] = lambda: 0  # bytes of the message being assembled

    def _recv_until_deadline(self, bufsize: int) -> bytes:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise websocket.WebSocketTimeoutException("read deadline")
        return self._raw_recv(bufsize)

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length + self.pending() > self.max_bytes:
            size = self.length + self.pending()
            raise FrameTooLarge(f"a message of at least {size} bytes (limit {self.max_bytes})")


class Assembler:
    """Joins a message's continuation frames, at most `max_bytes` in all, in linear time."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._opcode: int | None = None
        self._data = bytearray()

    def pending(self) -> int:
        return len(self._data)

    def add(self, frame: ABNF) -> tuple[bytes, bool] | None:
        """The whole message (payload, binary) once its last frame is in, else None."""
        if frame.opcode == ABNF.OPCODE_CONT:
            if self._opcode is None:
                raise websocket.WebSocketProtocolException("a continuation frame with no message begun")
        elif self._opcode is not None:
            raise websocket.WebSocketProtocolException("a new message before the last one ended")
        else:
            self._opcode = frame.opcode
        if len(self._data) + len(frame.data) > self.max_bytes:
            size = len(self._data) + len(frame.data)
            self._opcode, self._data = None, bytearray()
            raise FrameTooLarge(f"a message of at least {size} bytes in continuation frames (limit {self.max_bytes})")
        if not frame.fin:
            self._data += frame.data
            return None
        binary = self._opcode == ABNF.OPCODE_BINARY
        payload = bytes(self._data) + frame.data if self._data else bytes(frame.data)
        self._opcode, self._data = None, bytearray()
        return payload, binary


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
                metrics.ws_connect_failures.labels(self.dataset.name, CONNECT_ERROR).inc()
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
        sockets: list[socket.socket] = []
        dog = Watchdog(CONNECT_TIMEOUT, lambda: [shut(sock) for sock in [*sockets, ws.sock]])
        try:
            with dog:
                self._open(ws, sockets, time.monotonic() + CONNECT_TIMEOUT)
            return ws
        except Failed as failed:
            reason, detail = failed.reason, failed.detail
        except (OSError, websocket.WebSocketException) as exc:
            reason, detail = ConnectFailure.ERROR, _describe(exc)
        if dog.fired and reason not in (ConnectFailure.DNS, ConnectFailure.REDIRECT):
            reason, detail = ConnectFailure.TIMEOUT, f"no subscription within {CONNECT_TIMEOUT:g}s"
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(Exception):
            ws.close(timeout=0)
        metrics.ws_connect_failures.labels(self.dataset.name, reason).inc()
        # host:port, as the sender names Keycloak's and the collector's: on a shared host the port says
        # which service refused (never the URL: its query may carry the webhook token).
        where = url_host(self.dataset.websocket_url) or self.host
        problem = f"{reason} ({where}): {detail}"
        if reason is ConnectFailure.REJECTED:
            problem += f"; the webhook token of {self.dataset.name} does not open dataset {self.dataset.id}"
        elif reason is ConnectFailure.HTTP_4XX:
            problem += f"; is dataset {self.dataset.id} known to the subscription?"
        if self._note.record(problem):
            self.log.error("cannot subscribe to dataset %s: %s", self.dataset.id, problem, extra={"reason": reason})
        else:
            self.log.warning("connect failed: %s", problem, extra={"reason": reason})
        return None

    def _open(self, ws: websocket.WebSocket, sockets: list[socket.socket], deadline: float) -> None:
        """Resolve (bounded), connect, tunnel through a proxy the environment names, TLS, handshake.

        The steps websocket-client takes in one call, taken one by one so that each failure has
        its own reason and name resolution has a deadline (it has none of its own).
        """
        parts = urlsplit(self.dataset.websocket_url)
        host, secure = parts.hostname or "", parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        proxy_host, proxy_port, proxy_auth = get_proxy_info(host, secure)
        target = (proxy_host, int(proxy_port or 80)) if proxy_host else (host, port)
        try:
            addresses = resolve(target[0], target[1], deadline - time.monotonic())
        except ResolveTimeout:
            raise Failed(ConnectFailure.DNS, f"no answer for {target[0]} within {CONNECT_TIMEOUT:g}s") from None
        except (socket.gaierror, UnicodeError) as exc:
            raise Failed(ConnectFailure.DNS, f"{target[0]} does not resolve ({_describe(exc)})") from None
        sock = self._tcp(addresses, sockets, deadline)
        try:
            if proxy_host:
                sock = _tunnel(sock, host, port, proxy_auth)
            if secure:
                sock = _ssl_socket(sock, {}, host)
                sockets.append(sock)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise Failed(ConnectFailure.TLS, _describe(exc)) from None
        except websocket.WebSocketProxyException as exc:
            raise Failed(ConnectFailure.ERROR, f"the proxy {proxy_host} refused: {_describe(exc)}") from None
        try:
            # redirect_limit=0: the URL carries the webhook token, which no redirect target may see.
            ws.connect(self.url, socket=sock, timeout=max(0.001, deadline - time.monotonic()), redirect_limit=0)
        except websocket.WebSocketBadStatusException as exc:
            reason = handshake_failure(exc.status_code)
            raise Failed(reason, f"the handshake was answered {exc.status_code}") from None
        except websocket.WebSocketException as exc:
            if "Redirect" in str(exc):
                raise Failed(ConnectFailure.REDIRECT, "the server redirects the subscription; not followed") from None
            raise

    def _tcp(self, addresses: list, sockets: list[socket.socket], deadline: float) -> socket.socket:
        refused: OSError | None = None
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                sock.connect(address)
                return sock
            except OSError as exc:
                if isinstance(exc, TimeoutError | socket.timeout):
                    raise Failed(ConnectFailure.TIMEOUT, f"no TCP connection within {CONNECT_TIMEOUT:g}s") from None
                refused = exc
                sock.close()
        raise Failed(ConnectFailure.REFUSED, _describe(refused) if refused else "no address")

    def _connect_and_listen(self) -> float | None:
        """One connection's life; returns how long it lived, or None if it never opened."""
        ws = self._connect()
        if ws is None:
            return None
        opened, opened_mono = time.time(), time.monotonic()
        # An interval a failed write left open ends at its last heartbeat, not now.
        self.store.close_dangling_subscriptions(self.dataset.name)
        sub_id = self.store.subscription_opened(self.dataset.name, opened, opened_mono)
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

    def _listen(
        self, ws: websocket.WebSocket, sub_id: int, opened: float, opened_mono: float
    ) -> tuple[DisconnectReason, float, float]:
        """Read frames until the connection ends; returns (reason, last proof of life, its monotonic time)."""
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
                due = alive.due(now)
                if due is Due.DEAD:
                    self.log.warning("no pong within %.1fs: connection is dead", cfg.pong_timeout_seconds)
                    return DisconnectReason.PONG_TIMEOUT, alive.last_alive, alive.last_alive_mono or opened_mono
                if due is Due.PING:
                    if not self._write(ws.ping, b"") and not self.stop.is_set():
                        return DisconnectReason.ERROR, time.time(), time.monotonic()
                    alive.pinged(now)
                elif due is Due.HEARTBEAT:
                    self.store.subscription_alive(sub_id, alive.last_alive, alive.last_alive_mono)
                    alive.heartbeat_written(now)
                # Block until the next thing is due, not on a fixed poll: an idle subscription wakes
                # for its pings and heartbeats only.
                block = min(MAX_BLOCK, max(0.005, alive.wait_for(time.monotonic()) + 0.001))
                pause = noise.pause(now)
                if pause > 0:  # over its share of CPU on noise: stop reading, TCP holds the peer back
                    self.stop.wait(min(pause, block))
                    continue
                ws.settimeout(block)
                reader.deadline = time.monotonic() + block
                cpu = time.thread_time()
                try:
                    frame = ws.recv_frame()
                except websocket.WebSocketTimeoutException:
                    continue
                except FrameTooLarge as exc:
                    return self._too_large(ws, exc)
                except (websocket.WebSocketConnectionClosedException, OSError, websocket.WebSocketException) as exc:
                    if self.stop.is_set():  # interrupt() shut the socket to wake us
                        break
                    self.log.warning("connection lost: %s", _describe(exc))
                    return DisconnectReason.ERROR, time.time(), time.monotonic()
                received_at, received_mono = time.time(), time.monotonic()
                opcode = frame.opcode
                ours = False
                if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
                    alive.frame(received_at, received_mono)
                    try:
                        whole = message.add(frame)
                    except FrameTooLarge as exc:
                        return self._too_large(ws, exc)
                    except websocket.WebSocketProtocolException as exc:
                        self.log.warning("protocol error: %s; reconnecting", exc)
                        return DisconnectReason.ERROR, received_at, received_mono
                    ours = whole is not None and bool(self.on_frame(whole[0], whole[1], received_at, received_mono))
                elif opcode == ABNF.OPCODE_PING:
                    alive.frame(received_at, received_mono)
                    if not self._write(ws.pong, frame.data[:125]) and not self.stop.is_set():
                        return DisconnectReason.ERROR, received_at, received_mono
                elif opcode == ABNF.OPCODE_PONG:
                    alive.pong(received_at, received_mono)
                elif opcode == ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
                    self.log.info("server closed the connection (code %s)", code)
                    return DisconnectReason.SERVER_CLOSE, received_at, received_mono
                if not ours:  # every frame but our events is noise: control frames too (a ping flood)
                    noise.spend(time.thread_time() - cpu, time.monotonic())
            return DisconnectReason.SHUTDOWN, time.time(), time.monotonic()
        finally:
            reader.deadline = time.monotonic()  # the close that follows must not wait on a dripping peer

    def _write(self, send: Callable[[bytes], object], payload: bytes) -> bool:
        """Send a control frame; False (logged) when it cannot be written within the read's timeout:
        a peer that reads nothing (say, pings without reading the pongs) ends the connection
        under a reason, never the loop with an exception."""
        try:
            send(payload)
            return True
        except (OSError, websocket.WebSocketException) as exc:
            if not self.stop.is_set():
                self.log.warning("connection lost: cannot write to it (%s)", _describe(exc))
            return False

    def _too_large(self, ws: websocket.WebSocket, exc: Exception) -> tuple[DisconnectReason, float, float]:
        metrics.events_malformed.labels(self.dataset.name, MalformedReason.TOO_LARGE).inc()
        self.log.warning("refused %s; reconnecting", exc)
        ws.shutdown()  # no closing handshake: that would read the rest of the message
        return DisconnectReason.TOO_LARGE, time.time(), time.monotonic()


def _describe(exc: BaseException | None) -> str:
    """An exception as a short phrase: its strerror when it has one, never a URL (it may carry a token)."""
    if exc is None:
        return "unknown"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.split("?", 1)[0][:200]
