"""The subscription against peers that split, drip, refuse or never answer; in-process, real sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from probe_listener import connect as connect_mod
from probe_listener.budget import NOISE_SHARE
from probe_listener.connect import ConnectFailure, handshake_failure
from probe_listener.subscription import Subscription
from shared import config
from shared.store import NoteOwner, Store, note_key
from testkit import hostile
from tests.helpers import ROOT, wait_until


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def setup(tmp_path: Path, url: str, **env: str) -> tuple[Subscription, Store, str]:
    dataset = f"hostile-{tmp_path.name}"[:60]
    settings = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "WEBSOCKET_URL": url,
        "DATASET_ID": dataset,
        "MAX_MESSAGE_BYTES": "65536",
        **env,
    }
    store = Store(tmp_path / "probe.sqlite3")
    cfg = config.load(settings)
    return Subscription(cfg, cfg.datasets[0], store, lambda *_: False, threading.Event()), store, dataset


def test_a_huge_message_in_continuation_frames_is_refused_like_one_big_frame(tmp_path: Path) -> None:
    """Issue 22.5: 100 MB as 60 KB continuation frames went around the frame limit (30 -> 164 MB RSS)."""
    with hostile.serve(hostile.fragmenting(100_000_000, 60_000)) as peer:
        sub, store, dataset = setup(tmp_path, peer.ws_url)
        tracemalloc.start()
        try:
            lived = sub._connect_and_listen()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert lived is not None
        assert store.subscribed_since(dataset, 60, time.time()) is None  # its interval is closed
        store.close()
    assert sample("probe_events_malformed_total", dataset=dataset, reason="too_large") == 1
    assert sample("probe_websocket_disconnects_total", dataset=dataset, reason="too_large") == 1
    assert sample("probe_websocket_connected", dataset=dataset) == 0
    assert peak < 5_000_000, peak  # about the 64 KiB limit, never the 100 MB


def test_a_message_dripped_in_fragments_never_stops_the_pings_and_ends_by_the_pong_timeout(tmp_path: Path) -> None:
    """A peer that never finishes its message and never answers a ping: the loop keeps its heartbeats
    (no 'connected' while readiness says not subscribed) and gives up by the pong timeout."""

    def drip(conn: socket.socket, stopping: threading.Event) -> None:
        hostile.accept_websocket(conn)
        conn.sendall(hostile.frame(hostile.TEXT, b"{", fin=False))
        while not stopping.wait(0.05):
            conn.sendall(hostile.frame(hostile.CONT, b" ", fin=False))  # pings read and never answered

    with hostile.serve(drip) as peer:
        sub, store, dataset = setup(tmp_path, peer.ws_url, PING_INTERVAL_SECONDS="0.5", PONG_TIMEOUT_SECONDS="0.4")
        done: list[float | None] = []
        thread = threading.Thread(target=lambda: done.append(sub._connect_and_listen()))
        started = time.monotonic()
        thread.start()
        thread.join(10)
        assert done, "the listening loop is stuck inside one message"
        assert time.monotonic() - started < 5  # a ping interval and a pong timeout, with a wide margin
        store.close()
    assert sample("probe_websocket_disconnects_total", dataset=dataset, reason="pong_timeout") == 1


def test_connect_failures_name_their_cause_and_the_host(tmp_path: Path) -> None:
    """Issue 24: refused, handshake statuses, TLS; the note /readyz shows names reason and host."""
    with socket.socket() as bound:  # held bound and not listening: refused, and no one else's
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        sub, store, dataset = setup(tmp_path, f"ws://127.0.0.1:{port}/event-data-subscription")
        assert sub._connect() is None
    assert sample("probe_websocket_connect_failures_total", dataset=dataset, reason="refused") == 1
    # host:port, as the sender names Keycloak's and the collector's: on a shared host the port tells which
    assert store.note(note_key(NoteOwner.LISTENER, dataset)).startswith(f"refused (127.0.0.1:{port}): ")
    for status, reason in ((401, "rejected"), (403, "rejected"), (404, "http_4xx"), (502, "http_5xx")):
        with hostile.serve(hostile.answering(status)) as peer:
            sub.url = connect_mod.subscription_url(sub.dataset).replace(sub.dataset.websocket_url, peer.ws_url)
            sub.dataset = sub.dataset.__class__(**{**sub.dataset.__dict__, "websocket_url": peer.ws_url})
            assert sub._connect() is None
        assert sample("probe_websocket_connect_failures_total", dataset=dataset, reason=reason) >= 1, status
        note = store.note(note_key(NoteOwner.LISTENER, dataset))
        assert note.startswith(f"{reason} ({peer.ws_url.split('/')[2]}): the handshake was answered {status}")

    def plain(conn: socket.socket, stopping: threading.Event) -> None:
        conn.recv(4096)  # a TLS ClientHello, answered in plain text
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with hostile.serve(plain) as peer:
        tls_url = f"wss://127.0.0.1:{peer.port}/event-data-subscription"
        sub.dataset = sub.dataset.__class__(**{**sub.dataset.__dict__, "websocket_url": tls_url})
        sub.url = connect_mod.subscription_url(sub.dataset)
        assert sub._connect() is None
    assert sample("probe_websocket_connect_failures_total", dataset=dataset, reason="tls") == 1
    assert "webhook_token" not in store.note(note_key(NoteOwner.LISTENER, dataset))
    store.close()


def test_handshake_statuses_map_to_reasons() -> None:
    assert [handshake_failure(s) for s in (301, 400, 401, 403, 404, 500, 503, 99)] == [
        ConnectFailure.REDIRECT,
        ConnectFailure.HTTP_4XX,
        ConnectFailure.REJECTED,
        ConnectFailure.REJECTED,
        ConnectFailure.HTTP_4XX,
        ConnectFailure.HTTP_5XX,
        ConnectFailure.HTTP_5XX,
        ConnectFailure.ERROR,
    ]


def test_the_connect_deadline_covers_a_dns_server_that_never_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22.11: resolution that hangs (as against a DNS server that never answers) took a 10 s
    budget to 20 s. Here it hangs for 30 s; the connect gives up at its own deadline, reason dns."""
    release = threading.Event()
    real = socket.getaddrinfo

    def unanswered(host: str, *args: object, **kwargs: object) -> list:
        if host == "ws.never-answers.example":
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    monkeypatch.setattr(connect_mod, "CONNECT_TIMEOUT", 1.0)
    sub, store, dataset = setup(tmp_path, "ws://ws.never-answers.example/event-data-subscription")
    started = time.monotonic()
    try:
        assert sub._connect() is None
        took = time.monotonic() - started
    finally:
        release.set()
    assert took < 2.5, took  # the 1 s budget, plus a generous margin for a busy machine
    assert sample("probe_websocket_connect_failures_total", dataset=dataset, reason="dns") == 1
    note = store.note(note_key(NoteOwner.LISTENER, dataset))
    assert note.startswith("dns (ws.never-answers.example): no answer"), note
    store.close()


def test_a_proxy_the_environment_names_is_resolved_and_tunnelled_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscription follows http_proxy as websocket-client would: only the proxy's name is
    resolved (within the deadline); the target's is the proxy's business."""
    seen: list[bytes] = []

    def proxy(conn: socket.socket, stopping: threading.Event) -> None:
        seen.append(hostile.read_head(conn))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        hostile.accept_websocket(conn)
        stopping.wait(5)

    with hostile.serve(proxy) as peer:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{peer.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        sub, store, dataset = setup(tmp_path, "ws://ws.proxied.example/event-data-subscription")
        ws = sub._connect()
        assert ws is not None, store.note(note_key(NoteOwner.LISTENER, dataset))
        ws.shutdown()
        store.close()
    assert seen and seen[0].startswith(b"CONNECT ws.proxied.example:80 HTTP/1.1")


def _ping_flood(conn: socket.socket, stopping: threading.Event) -> None:
    """Pings as fast as the client takes them (its pongs drained and dropped)."""
    hostile.accept_websocket(conn)
    conn.settimeout(1.0)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while not stopping.is_set() and conn.recv(65536):
                pass

    threading.Thread(target=drain, daemon=True).start()
    batch = hostile.frame(hostile.PING, b"x" * 125) * 64
    while not stopping.is_set():
        try:
            conn.sendall(batch)
        except TimeoutError:
            continue


def test_a_ping_flood_gets_the_noise_share_of_cpu_and_no_more(tmp_path: Path) -> None:
    """Control frames are noise too: a peer that pings without pause held the thread (and the
    interpreter lock every other subscription waits on) however small the noise budget."""
    with hostile.serve(_ping_flood) as peer:
        sub, store, _ = setup(tmp_path, peer.ws_url)
        thread = threading.Thread(target=sub._connect_and_listen)
        thread.start()
        wait_until(lambda: peer.connections, 10, "the subscription")
        clock = time.pthread_getcpuclockid(thread.ident)
        time.sleep(1)  # past the noise budget's burst
        before, started = time.clock_gettime(clock), time.monotonic()
        time.sleep(3)  # the window the thread's CPU is measured over
        share = (time.clock_gettime(clock) - before) / (time.monotonic() - started)
        sub.stop.set()
        sub.interrupt()
        thread.join(10)
        store.close()
    print(f"the subscription's CPU share under a ping flood: {share:.3f}")
    assert share < 4 * NOISE_SHARE, share  # the share is 5 % of a core; it used to be most of one


def test_a_peer_that_pings_and_never_reads_the_pongs_ends_the_connection_under_a_reason(tmp_path: Path) -> None:
    """A pong that cannot be written (the peer reads nothing) used to escape the loop as an exception:
    a traceback and a connect failure, with the connection's end never counted."""

    def pings_unread(conn: socket.socket, stopping: threading.Event) -> None:
        hostile.accept_websocket(conn)
        conn.settimeout(1.0)
        batch = hostile.frame(hostile.PING, b"x" * 125) * 64
        while not stopping.is_set():
            try:
                conn.sendall(batch)
            except TimeoutError:
                continue

    with hostile.serve(pings_unread) as peer:
        sub, store, dataset = setup(tmp_path, peer.ws_url, PING_INTERVAL_SECONDS="30", PONG_TIMEOUT_SECONDS="20")
        done: list[float | None] = []
        thread = threading.Thread(target=lambda: done.append(sub._connect_and_listen()), daemon=True)
        thread.start()
        thread.join(60)
        stopped = not thread.is_alive()
        sub.stop.set()
        sub.interrupt()
        thread.join(10)
        store.close()
    assert stopped and done, "the loop raised, or never gave up"
    assert sample("probe_websocket_disconnects_total", dataset=dataset, reason="error") == 1
