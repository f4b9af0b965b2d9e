"""The metrics endpoint under idle, slow and bloated clients: bounded, and scrapes keep working."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from probe_stack.metrics import bounded_http
from probe_stack.metrics import server as metrics_server
from shared import config
from shared.store import Store
from tests.helpers import ROOT, free_port, wait_until


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    monkeypatch.setattr(bounded_http, "REQUEST_TIMEOUT", 1.0)
    port = free_port()
    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    with Store(tmp_path / "probe.sqlite3") as store:
        srv = metrics_server.make_server(config.load(env), store, limit=8)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{port}"
        srv.shutdown()
        srv.server_close()


def test_idle_connections_are_bounded_and_dropped_so_scrapes_keep_working(server: str) -> None:
    assert requests.get(f"{server}/healthz", timeout=2).text == "ok\n"
    port = int(server.rsplit(":", 1)[1])
    before = threading.active_count()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        assert threading.active_count() - before <= 8  # one handler thread per slot, however many wait

        def scrape_works() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{server}/metrics", timeout=2).status_code == 200
            return False

        wait_until(scrape_works, 5, "a scrape to get through while 300 idle connections stay open")
        newest = idle[-1]
        newest.settimeout(10)
        # closed by the server once idle for REQUEST_TIMEOUT, with a 408
        assert newest.recv(4096).startswith(b"HTTP/1.0 408") and newest.recv(1) == b""
    finally:
        for conn in idle:
            conn.close()


def scrape_ok(server: str) -> bool:
    try:
        return requests.get(f"{server}/metrics", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_slowloris_cannot_hold_the_slots_scrapes_need(server: str) -> None:
    """40 connections (5 per slot) each dribbling a byte of a request head faster than any read
    timeout: each is closed at the whole-request deadline, and every scrape meanwhile gets through."""
    port = int(server.rsplit(":", 1)[1])
    stop = threading.Event()
    closed_after: list[float] = []

    def dribble() -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-a: b\r\n" * 100:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.2)
        closed_after.append(time.monotonic() - started)

    attackers = [threading.Thread(target=dribble, daemon=True) for _ in range(40)]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(0.5)  # every attacker connected and dribbling
        results = []
        until = time.monotonic() + 4  # beyond the 1 s request deadline: the attack is renewed meanwhile
        while time.monotonic() < until:
            results.append(scrape_ok(server))
            time.sleep(0.25)
        assert len(results) >= 4 and all(results), results
    finally:
        stop.set()
        for thread in attackers:
            thread.join(10)
    # each attacker was cut off at the request deadline (1 s here), not left to dribble on
    assert len(closed_after) == 40 and max(closed_after) < 1 + 30


def test_bloated_request_heads_are_refused_after_a_bounded_read(server: str) -> None:
    """99 headers of almost 64 KiB each (just within http.server's own line limit), from 32 clients
    at once: refused with 431 after a few KiB each, instead of 6.4 MB read and held per request."""
    port = int(server.rsplit(":", 1)[1])
    answers: list[bytes] = []
    sent: list[int] = []

    def bloat() -> None:
        header = b"X-Big: " + b"a" * 65000 + b"\r\n"
        total = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            try:
                conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                for _ in range(99):
                    conn.sendall(header)
                    total += len(header)
            except OSError:
                pass  # the server stopped reading and closed: what is wanted
            sent.append(total)
            try:
                answers.append(conn.recv(4096))
            except OSError:
                answers.append(b"")

    clients = [threading.Thread(target=bloat, daemon=True) for _ in range(32)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert len(answers) == 32
    refused = [a for a in answers if a.startswith(b"HTTP/1.0 431")]
    # Each answer is a 431 or a reset (the server closed with our bytes unread): never a 200.
    assert refused and not any(b" 200 " in a.split(b"\r\n", 1)[0] for a in answers), answers[:3]
    assert min(sent) < 99 * 65536  # none of them got all 6.4 MB read
    assert scrape_ok(server)


def test_one_address_cannot_crowd_out_another(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 idle connections from 127.0.0.2: only its newest MAX_WAITING_PER_CLIENT stay waiting."""
    monkeypatch.setattr(bounded_http, "REQUEST_TIMEOUT", 60.0)  # none is closed for its deadline here
    port = int(server.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(300):
            conn = socket.socket()
            conn.bind(("127.0.0.2", 0))
            conn.connect(("127.0.0.1", port))
            idle.append(conn)
        assert scrape_ok(server)

        def cut(conn: socket.socket) -> bool:
            conn.settimeout(0.01)
            try:
                return conn.recv(1) == b""
            except TimeoutError:
                return False
            except OSError:
                return True

        oldest = idle[: 300 - bounded_http.MAX_WAITING_PER_CLIENT]
        wait_until(lambda: all(cut(c) for c in oldest[-5:]), 10, "the address's oldest connections closed")
        assert not any(cut(c) for c in idle[-5:])
    finally:
        for conn in idle:
            conn.close()


def test_the_request_head_rules() -> None:
    assert bounded_http.head_state(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is bounded_http.Head.COMPLETE
    assert bounded_http.head_state(b"GET / HTTP/1.1\r\nHost: x\r\n") is bounded_http.Head.INCOMPLETE
    assert bounded_http.head_state(b"GET / HTTP/1.0\nHost: x\n\n") is bounded_http.Head.COMPLETE
    many = b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * (bounded_http.MAX_HEADER_LINES + 1)
    assert bounded_http.head_state(many) is bounded_http.Head.TOO_MANY_HEADERS
    big = b"GET / HTTP/1.1\r\nA: " + b"b" * bounded_http.MAX_HEAD_BYTES
    assert bounded_http.head_state(big) is bounded_http.Head.TOO_LARGE


def test_a_directory_named_like_a_metric_file_is_skipped_and_logged_once(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a pid that no longer runs: the sweep looks at its live gauges
    (tmp_path / "metrics" / "counter_2.db").mkdir()
    (tmp_path / "metrics" / f"gauge_liveall_{dead}.db").mkdir()
    with caplog.at_level(logging.WARNING, logger="metrics"):
        for _ in range(3):
            r = requests.get(f"{server}/metrics", timeout=5)
            assert r.status_code == 200
            time.sleep(1.1)  # past the sweep's rate limit: each scrape sweeps
    assert sum("counter_2.db" in record.getMessage() for record in caplog.records) == 1
    assert (tmp_path / "metrics" / f"gauge_liveall_{dead}.db").is_dir()  # not ours to remove
