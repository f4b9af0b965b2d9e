"""X-Ray tracing with the real SDK: what sender and listener send to a daemon address, decoded here."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.tracing import NoTracer, make_tracer
from tests.helpers import PYTHON, ROOT, EmulatorClient, read_events, start, start_probe, wait_until

pytestmark = pytest.mark.timeout(120)


@dataclass
class Daemon:
    """A UDP socket standing in for the X-Ray daemon: every datagram, as the SDK sent it."""

    sock: socket.socket
    raw: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def receive(self, stop: threading.Event) -> None:
        self.sock.settimeout(0.1)
        while not stop.is_set():
            try:
                self.raw.append(self.sock.recv(65536))
            except TimeoutError:
                continue
            except OSError:
                return

    def documents(self) -> list[dict]:
        """The daemon protocol: a JSON header line, then the segment document."""
        docs = []
        for datagram in list(self.raw):
            header, _, body = datagram.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            docs.append(json.loads(body))
        return docs


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()
    found = Daemon(sock)
    thread = threading.Thread(target=found.receive, args=(stop,), daemon=True)
    thread.start()
    yield found
    stop.set()
    thread.join(2)
    sock.close()


def subsegments(doc: dict) -> list[dict]:
    return doc.get("subsegments", [])


def test_every_event_is_one_trace_from_its_post_to_its_arrival(
    emulator: EmulatorClient, daemon: Daemon, tmp_path: Path
) -> None:
    env = emulator.env(
        tmp_path,
        AWS_XRAY_SDK_ENABLED="true",
        AWS_XRAY_DAEMON_ADDRESS=daemon.address,
        EVENT_INTERVAL_SECONDS=0.1,
        STARTUP_WAIT_SECONDS=10,
    )
    emulator.faults(collector_error_rate=0.3, collector_error_statuses=[503], seed=3)
    listener = start_probe("listener", env, tmp_path)
    sender = start_probe("sender", env, tmp_path)
    try:
        wait_until(lambda: sum(r.state == "received" for r in read_events(env)) >= 15, 30, "15 arrivals")
    finally:
        assert sender.stop() == 0
        assert listener.stop() == 0
    docs = daemon.documents()
    posts = {d["annotations"]["seqno"]: d for d in docs if d["name"] == "dataplatform-probe"}
    arrivals = [d for d in docs if d["name"] == "dataplatform-probe listener"]
    truth = {e["seqno"]: e for e in emulator.truth()["events"]}
    events = {r.seqno: r for r in read_events(env)}
    assert len(posts) >= 15
    for seqno, post in posts.items():
        notes = post["annotations"]
        assert notes["dataset"] == "probe-dataset" and notes["app_id"]
        assert notes["outcome"] == ("posted" if events[seqno].post_state == "ok" else events[seqno].post_error)
        attempts = [s for s in subsegments(post) if s["name"] == "collector"]
        assert attempts and all(s["http"]["request"]["method"] == "POST" for s in attempts)
        assert all("?" not in s["http"]["request"]["url"] for s in attempts)
        if seqno in truth:  # accepted: the collector saw the trace header of the accepted attempt
            header = truth[seqno]["trace_header"]
            assert header.startswith(f"Root={post['trace_id']};Parent=") and header.endswith(";Sampled=1")
            assert header.split(";")[1].removeprefix("Parent=") in {s["id"] for s in attempts}
        failed = [s for s in attempts if s["http"].get("response", {}).get("status") == 503]
        assert all(s.get("fault") for s in failed)
    assert any(s.get("fault") for p in posts.values() for s in subsegments(p)), "no 503 was traced"
    received = [a for a in arrivals if a["annotations"]["classification"] == "received"]
    assert len(received) >= 15
    for arrival in received:
        seqno = arrival["annotations"]["seqno"]
        assert arrival["trace_id"] == posts[seqno]["trace_id"]
        assert arrival["annotations"]["latency_seconds"] == pytest.approx(events[seqno].latency)
    text = b"".join(daemon.raw).decode()
    from shared.config import LOCAL_CLIENT_SECRET, LOCAL_WEBHOOK_TOKEN

    assert LOCAL_CLIENT_SECRET not in text and LOCAL_WEBHOOK_TOKEN not in text and "Bearer" not in text
    assert "eyJ" not in text  # no token


def test_tracing_off_sends_nothing_and_never_loads_the_sdk(
    emulator: EmulatorClient, daemon: Daemon, tmp_path: Path
) -> None:
    env = emulator.env(tmp_path, AWS_XRAY_DAEMON_ADDRESS=daemon.address, EVENT_INTERVAL_SECONDS=0.1)
    procs = {}
    for kind in ("listener", "sender"):
        start_probe(kind, env, tmp_path, tag="-store")  # creates the store as probe run would
    for kind in ("listener", "sender"):
        procs[kind] = start([PYTHON, "-X", "importtime", "-m", f"probe_{kind}"], tmp_path / f"{kind}-it.log", env=env)
    try:
        wait_until(lambda: sum(r.state == "received" for r in read_events(env)) >= 5, 30, "5 arrivals")
    finally:
        for proc in procs.values():
            assert proc.stop() == 0
    assert daemon.raw == []
    for kind, proc in procs.items():
        assert "aws_xray_sdk" not in proc.output() and "botocore" not in proc.output(), kind
    assert isinstance(make_tracer(False, "x"), NoTracer) and not make_tracer(False, "x").enabled


def test_events_without_a_trace_id_are_still_accepted_and_simply_not_traced() -> None:
    from probe_listener.classify import Kind, parse
    from shared import event as event_mod

    key = bytes(32)
    plain = {"app_id": "abcdef01", "seqno": 3, "time_sent": "2026-11-28T00:00:00Z"}
    bad = {**plain, "trace_id": "Root=x"}
    for event in (plain, bad):
        event_mod.seal(event, key)
    assert parse(json.dumps(plain).encode(), False, 9999, "abcdef01", key, 0).kind is Kind.OURS
    message = parse(json.dumps(bad).encode(), False, 9999, "abcdef01", key, 0)
    assert message.kind is Kind.OURS and message.trace_id is None


def test_the_sdk_is_a_dependency_of_the_lock() -> None:
    lock = json.loads((ROOT / "Pipfile.lock").read_text())
    assert "aws-xray-sdk" in lock["default"]
    subprocess.run([PYTHON, "-c", "import aws_xray_sdk.core"], check=True, timeout=60)
