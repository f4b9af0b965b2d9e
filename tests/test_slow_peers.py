"""Peers that drip, lie or redirect: every call ends by its deadline in all and is counted once.

Stand-in servers written here, on loopback, because the emulator is an honest peer.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY

from probe_listener import connect as connect_mod
from probe_listener.subscription import Subscription
from probe_sender.collector import Collector, PostError
from shared import config
from shared.auth import AuthError, TokenProvider, TokenResult
from shared.http_deadline import guard
from shared.store import Store
from testkit.hostile import drip
from testkit.hostile import read_head as read_request
from testkit.hostile import serve as raw_peer
from tests.helpers import ROOT

SLOW_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n" + b'{"message": "Ok"}'


def dripping(every: float = 0.2):
    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        read_request(conn)
        drip(conn, SLOW_ANSWER, every, stopping)

    return handle


def guarded_session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", guard(requests.adapters.HTTPAdapter()))
    return session


def test_a_collector_that_drips_its_answer_times_out_by_the_post_deadline() -> None:
    with raw_peer(dripping()) as peer:
        deadline = 1.0
        collector = Collector(f"http://127.0.0.1:{peer.port}/event", None, deadline, guarded_session())
        started = time.monotonic()
        result = collector.post({"app_id": "abcdef01", "seqno": 1, "time_sent": "2026-11-28T00:00:00Z"})
        took = time.monotonic() - started
    assert (result.ok, result.reason) == (False, PostError.TIMEOUT)
    # Each byte arrives within the read timeout and the answer takes 20 s: only the total deadline
    # ends it (the margin, twice the deadline, is for a busy machine).
    assert took < 3 * deadline, took


def test_a_token_endpoint_that_drips_ends_by_its_deadline_and_never_holds_posts() -> None:
    results: list[TokenResult] = []
    with raw_peer(dripping()) as peer:
        deadline = 2.0
        tokens = TokenProvider(f"http://127.0.0.1:{peer.port}/auth", "r", "c", "s3cret", 30, results.append, deadline)
        failures: list[float] = []

        def fetch() -> None:
            started = time.monotonic()
            with pytest.raises(AuthError):
                tokens.get()
            failures.append(time.monotonic() - started)

        first = threading.Thread(target=fetch)
        first.start()
        time.sleep(0.1)  # let the first request take the lock
        started = time.monotonic()
        with pytest.raises(AuthError, match="under way"):
            tokens.get(timeout=0.3)  # a post with 0.3 s left waits no longer than that
        assert time.monotonic() - started < 0.3 + 1.0  # not until the first request's end, 1.9 s away
        first.join(5)
    assert failures and failures[0] < deadline + 1.0, failures
    assert results == [TokenResult.ERROR]


def listener_setup(tmp_path: Path, port: int) -> tuple[Subscription, Store, str]:
    dataset = f"peer-{tmp_path.name}"[:60]
    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "WEBSOCKET_URL": f"ws://127.0.0.1:{port}/event-data-subscription",
        "DATASET_ID": dataset,
        "MAX_MESSAGE_BYTES": "65536",
    }
    store = Store(tmp_path / "probe.sqlite3")
    cfg = config.load(env)
    sub = Subscription(cfg, cfg.datasets[0], store, lambda *_: None, threading.Event())
    return sub, store, dataset


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_handshake_fed_a_line_a_second_ends_at_the_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect_mod, "CONNECT_TIMEOUT", 1.0)
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: 1\r\n" * 5

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        read_request(conn)
        for line in head.split(b"\r\n"):
            if stopping.wait(0.4):
                return
            conn.sendall(line + b"\r\n")

    with raw_peer(handle) as peer:
        sub, store, dataset = listener_setup(tmp_path, peer.port)
        started = time.monotonic()
        assert sub._connect() is None
        assert time.monotonic() - started < 3 * 1.0  # the handshake would take 10 s
        store.close()
    assert sample("probe_websocket_connect_failures_total", dataset=dataset, reason="timeout") == 1


def test_a_redirected_subscription_is_not_followed(tmp_path: Path) -> None:
    followed: list[bytes] = []

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        request = read_request(conn)
        if b"/stolen" in request:
            followed.append(request)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /stolen\r\nContent-Length: 0\r\n\r\n")

    with raw_peer(handle) as peer:
        sub, store, dataset = listener_setup(tmp_path, peer.port)
        assert sub._connect() is None
        store.close()
    assert not followed  # the webhook token never went to the redirect target
    assert sample("probe_websocket_connect_failures_total", dataset=dataset, reason="redirect") == 1


def test_a_huge_frame_is_refused_by_its_announced_length_unread(tmp_path: Path) -> None:
    sent: list[int] = []

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        request = read_request(conn)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        conn.sendall(b"\x81\x7f" + struct.pack("!Q", 100_000_000))  # a 100 MB text frame announced
        chunk = b"x" * 65536
        while not stopping.is_set() and sum(sent) < 100_000_000:
            try:
                sent.append(conn.send(chunk))
            except OSError:
                return

    with raw_peer(handle) as peer:
        sub, store, dataset = listener_setup(tmp_path, peer.port)
        started = time.monotonic()
        tracemalloc.start()
        try:
            lived = sub._connect_and_listen()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert lived is not None and time.monotonic() - started < 5
        store.close()
    assert sample("probe_events_malformed_total", dataset=dataset, reason="too_large") == 1
    assert sample("probe_websocket_disconnects_total", dataset=dataset, reason="too_large") == 1
    assert peak < 5_000_000, peak  # the 100 MB payload was never read into memory
