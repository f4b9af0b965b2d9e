"""The listener with the sender and the emulator, each a real process, judged against the truth."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.exits import ExitStatus
from shared.store import EventRow, NoteOwner, Store, note_key
from tests.helpers import (
    PYTHON,
    EmulatorClient,
    Proc,
    implied_state,
    metric,
    read_events,
    read_metrics,
    start,
    start_probe,
    store_app_id,
    store_in_flight,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

FINAL = {"received", "late", "lost", "unobserved", "post_failed"}


@dataclass
class Pipeline:
    emulator: EmulatorClient
    env: dict[str, str]
    tmp: Path
    listener: Proc
    sender: Proc | None = None

    def rows(self) -> dict[int, EventRow]:
        """seqno -> the event as the store has it."""
        return {e.seqno: e for e in read_events(self.env)}

    def in_flight(self) -> int:
        return store_in_flight(self.env)

    def metrics(self) -> dict:
        return read_metrics(Path(self.env["PROMETHEUS_MULTIPROC_DIR"]))

    def start_sender(self) -> None:
        self.sender = start_probe("sender", self.env, self.tmp)

    def send_until(self, count: int, timeout: float = 30) -> None:
        wait_until(lambda: len(self.rows()) >= count, timeout, f"{count} events sent")

    def finish(self) -> None:
        """Stop sending, then wait until the listener has judged every event."""
        assert self.sender is not None and self.sender.stop() == 0, self.sender.output()
        loss = float(self.env["LOSS_TIMEOUT_SECONDS"])
        wait_until(lambda: self.in_flight() == 0, loss + 10, "every event to reach a final state")

    def truth(self) -> list[dict]:
        app_id = store_app_id(self.env)
        return [e for e in self.emulator.truth()["events"] if e["app_id"] == app_id]


@pytest.fixture
def pipeline(emulator: EmulatorClient, tmp_path: Path, request: pytest.FixtureRequest):
    procs: list[Proc] = []

    def make(**env: object) -> Pipeline:
        settings = {
            "EVENT_INTERVAL_SECONDS": 0.02,
            "LOSS_TIMEOUT_SECONDS": 2,
            "POST_TIMEOUT_SECONDS": 1,
            "STARTUP_WAIT_SECONDS": 10,
            "RECONNECT_MAX_SECONDS": 0.8,
            **env,
        }
        environment = emulator.env(tmp_path, **settings)
        listener = start_probe("listener", environment, tmp_path)
        procs.append(listener)
        wait_until(lambda: emulator.subscribers() == 1, 15, "the listener to subscribe")
        pipe = Pipeline(emulator, environment, tmp_path, listener)
        return pipe

    yield make
    for proc in procs:
        proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"---- {log.name} ----\n{log.read_text(errors='replace')[-4000:]}")


def test_drops_and_duplicates_equal_the_truth(pipeline) -> None:
    pipe: Pipeline = pipeline()
    pipe.emulator.faults(drop_rate=0.1, duplicate_rate=0.05, seed=11)
    pipe.start_sender()
    pipe.send_until(350)
    pipe.finish()
    truth = {e["seqno"]: e for e in pipe.truth()}
    rows = pipe.rows()
    assert len(rows) >= 350 and set(truth) == set(rows)
    dropped = [s for s, e in truth.items() if e["fate"] == "dropped"]
    extra_copies = sum(len(e["writes"]) - 1 for e in truth.values() if e["writes"])
    assert 15 < len(dropped) < 60 and extra_copies > 5
    samples = pipe.metrics()
    assert metric(samples, "probe_events_lost_total") == len(dropped)
    assert metric(samples, "probe_events_duplicated_total") == extra_copies
    assert metric(samples, "probe_events_received_total") == len(rows) - len(dropped)
    assert metric(samples, "probe_events_unobserved_total") == 0
    for seqno, row in rows.items():
        state, count = row.state, row.receive_count
        assert (state, count) == implied_state(truth[seqno]), seqno


def test_reordering_is_counted_and_never_taken_for_duplicates(pipeline) -> None:
    pipe: Pipeline = pipeline(EVENT_INTERVAL_SECONDS=0.01)
    pipe.emulator.faults(reorder_rate=0.2, reorder_ms=40, seed=5)
    pipe.start_sender()
    pipe.send_until(300)
    pipe.finish()
    first_arrivals, newest, out_of_order = set(), 0, 0
    writes = sorted((w["at"], e["seqno"]) for e in pipe.truth() for w in e["writes"])
    for _, seqno in writes:
        if seqno not in first_arrivals:
            first_arrivals.add(seqno)
            out_of_order += seqno < newest
            newest = max(newest, seqno)
    samples = pipe.metrics()
    assert out_of_order > 10
    assert metric(samples, "probe_events_out_of_order_total") == out_of_order
    assert metric(samples, "probe_events_duplicated_total") == 0
    assert {r.state for r in pipe.rows().values()} == {"received"}


def histogram_quantile(q: float, samples: dict, name: str) -> float:
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (n, labels), value in samples.items()
        if n == f"{name}_bucket" and dict(labels)["le"] != "+Inf"
    )
    total = metric(samples, f"{name}_count")
    rank, previous_le, previous_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            return previous_le + (le - previous_le) * (rank - previous_count) / max(count - previous_count, 1e-9)
        previous_le, previous_count = le, count
    raise AssertionError("quantile beyond the last bucket")


def test_latency_median_matches_a_fixed_100ms_delay(pipeline) -> None:
    """The delay is a floor of every latency; what a busy machine adds stays under half the delay, on the median."""
    buckets = ",".join(str(round(0.09 + i * 0.002, 3)) for i in range(16)) + ",0.15,0.3,1"
    pipe: Pipeline = pipeline(EVENT_INTERVAL_SECONDS=0.05, LATENCY_BUCKETS=buckets)
    pipe.emulator.faults(delay_ms=100)
    pipe.start_sender()
    pipe.send_until(100)
    pipe.finish()
    samples = pipe.metrics()
    median = histogram_quantile(0.5, samples, "probe_event_latency_seconds")
    assert 0.100 <= median <= 0.150, median
    latest = metric(samples, "probe_event_latency")
    assert 0.100 <= latest <= 1.0, latest  # one sample: the floor holds, the ceiling is generous


def test_forced_close_for_3s_reconnects_by_the_backoff_cap_and_blames_nobody(pipeline) -> None:
    pipe: Pipeline = pipeline(EVENT_INTERVAL_SECONDS=0.05)
    pipe.start_sender()
    pipe.send_until(20)
    pipe.emulator.faults(refuse_connections=True)
    closed_at = time.time()
    assert pipe.emulator.close_all(code=1001) == 1
    time.sleep(3)  # the outage being simulated lasts three seconds
    pipe.emulator.faults(refuse_connections=False)
    accepting = time.time()
    subscriber = wait_until(
        lambda: [s for s in pipe.emulator.truth()["subscribers"] if s["connected_at"] > accepting], 5, "resubscribe"
    )[0]
    assert subscriber["connected_at"] - accepting <= 0.8 + 1.0  # the backoff's cap, then a second to connect
    count = len(pipe.rows())
    pipe.send_until(count + 20)
    pipe.finish()
    rows = pipe.rows()
    samples = pipe.metrics()
    assert metric(samples, "probe_events_lost_total") == 0
    gap = [s for s, r in rows.items() if closed_at + 0.1 < r.sent_at < accepting]
    assert len(gap) >= 40
    assert all(rows[s].state == "unobserved" for s in gap)
    assert metric(samples, "probe_events_unobserved_total") >= len(gap)
    assert metric(samples, "probe_websocket_disconnects_total", reason="server_close") == 1
    assert metric(samples, "probe_websocket_connect_failures_total", reason="http_5xx") >= 2
    assert metric(samples, "probe_websocket_connected") == 1


def test_half_open_connection_is_detected_within_the_pong_timeout(pipeline) -> None:
    pipe: Pipeline = pipeline(EVENT_INTERVAL_SECONDS=0.05, PING_INTERVAL_SECONDS=0.5, PONG_TIMEOUT_SECONDS=0.4)
    pipe.start_sender()
    pipe.send_until(20)
    pipe.emulator.faults(half_open=True)
    silent_since = time.time()

    def detected() -> bool:
        return metric(pipe.metrics(), "probe_websocket_disconnects_total", reason="pong_timeout") >= 1

    wait_until(detected, 5, "the dead connection to be detected")
    # one ping interval, then the pong timeout; as much again for a busy machine
    assert time.time() - silent_since <= 2 * (0.5 + 0.4)
    pipe.emulator.faults(half_open=False)
    wait_until(lambda: metric(pipe.metrics(), "probe_websocket_connected") == 1, 5, "reconnected")
    count = len(pipe.rows())
    pipe.send_until(count + 20)
    pipe.finish()
    samples = pipe.metrics()
    assert metric(samples, "probe_events_lost_total") == 0  # the probe was blind, not the pipeline lossy
    assert metric(samples, "probe_events_unobserved_total") >= 5


def test_malformed_frames_are_counted_and_skipped(pipeline) -> None:
    pipe: Pipeline = pipeline()
    import base64

    frames = [
        {"text": "not json at all"},
        {"text": "[" * 30_000 + "]" * 30_000},  # deep nesting: RecursionError inside json
        {"binary_b64": base64.b64encode(b"\x00\x01\x02").decode()},
        {"text": '{"app_id": 5, "seqno": "one", "time_sent": 1}'},
        {"text": "[1, 2, 3]"},
        {"text": '{"app_id": "feedbeef", "seqno": 1, "time_sent": "2026-01-01T00:00:00+00:00"}\n'},
    ]
    for frame in frames:
        assert pipe.emulator.inject(**frame) == 1
    wait_until(lambda: metric(pipe.metrics(), "probe_wrong_appid_total") == 1, 10, "all frames handled")
    samples = pipe.metrics()
    for reason in ("not_json", "too_deep", "binary", "fields", "not_object"):
        assert metric(samples, "probe_events_malformed_total", reason=reason) == 1, reason
    assert metric(samples, "probe_websocket_disconnects_total") == 0  # none of them cost the subscription

    # A frame far above MAX_MESSAGE_BYTES is refused by its announced length, unread: counted once,
    # and the subscription is opened again.
    pipe.emulator.inject(text="x" * 900_000)  # the listener hangs up before the frame is through
    too_large = lambda: metric(pipe.metrics(), "probe_events_malformed_total", reason="too_large")  # noqa: E731
    wait_until(lambda: too_large() == 1, 10, "the large frame refused")
    wait_until(lambda: pipe.emulator.subscribers() == 1, 10, "subscribed again")
    assert metric(pipe.metrics(), "probe_websocket_disconnects_total", reason="too_large") == 1
    pipe.start_sender()
    pipe.send_until(10)
    pipe.finish()
    assert pipe.listener.popen.poll() is None
    assert metric(pipe.metrics(), "probe_events_received_total") == len(pipe.rows())


def test_sigkill_of_the_listener_loses_and_double_counts_nothing(pipeline) -> None:
    pipe: Pipeline = pipeline()
    pipe.start_sender()
    pipe.send_until(100)
    pipe.listener.stop(signal.SIGKILL)
    killed_at = time.time()
    pipe.listener = start_probe("listener", pipe.env, pipe.tmp, tag="-2")
    count = len(pipe.rows())
    pipe.send_until(count + 100)
    pipe.finish()
    assert pipe.listener.stop() == 0
    rows = pipe.rows()
    states = Counter(r.state for r in rows.values())
    assert set(states) <= FINAL, states  # every event ended in exactly one final state
    truth = {e["seqno"]: e for e in pipe.truth()}
    assert all(e["fate"] == "delivered" for e in truth.values())
    samples = pipe.metrics()
    assert metric(samples, "probe_events_lost_total") == 0  # nothing was dropped: nobody is blamed
    assert metric(samples, "probe_events_duplicated_total") == 0
    assert metric(samples, "probe_events_received_total") == states["received"] + states["late"]
    assert metric(samples, "probe_events_unobserved_total") == states["unobserved"] + states["late"]
    assert states["unobserved"] >= 1  # the gap around the kill
    # every event sent well after the restart's subscription was received
    resubscribed = min(s["connected_at"] for s in pipe.emulator.truth()["subscribers"] if s["connected_at"] > killed_at)
    assert all(r.state == "received" for r in rows.values() if r.sent_at > resubscribed + 0.05)


def test_an_outage_longer_than_the_loss_timeout_makes_events_lost_then_late(pipeline) -> None:
    pipe: Pipeline = pipeline(EVENT_INTERVAL_SECONDS=0.05, LOSS_TIMEOUT_SECONDS=1.5)
    pipe.start_sender()
    pipe.send_until(10)
    pipe.emulator.faults(paused=True)  # the pipeline holds everything; the listener stays subscribed
    count = len(pipe.rows())
    pipe.send_until(count + 20)
    pipe.sender.stop()
    wait_until(lambda: pipe.in_flight() == 0, 10, "the held events to be judged")
    held = [e["seqno"] for e in pipe.truth() if e["fate"] == "held"]
    assert len(held) >= 20
    assert metric(pipe.metrics(), "probe_events_lost_total") == len(held)
    pipe.emulator.faults(paused=False)
    wait_until(lambda: metric(pipe.metrics(), "probe_events_late_total") == len(held), 10, "late arrivals")
    rows = pipe.rows()
    assert all(rows[s].state == "late" for s in held)
    assert metric(pipe.metrics(), "probe_events_received_total") == len(rows)
    assert metric(pipe.metrics(), "probe_event_latency_seconds_count") == len(rows)


def test_a_dataset_the_subscription_refuses_is_named_once_and_noted_for_readyz(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    env = emulator.env(tmp_path, DATASET_ID="no-such-dataset", RECONNECT_MAX_SECONDS=0.2)
    listener = start_probe("listener", env, tmp_path)
    try:
        metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
        failures = "probe_websocket_connect_failures_total"
        wait_until(lambda: metric(read_metrics(metrics_dir), failures) >= 3, 20, "three refused handshakes")
    finally:
        assert listener.stop() == 0
    log = listener.output()
    host = env["WEBSOCKET_URL"].split("/")[2]  # 127.0.0.1:port
    problem = (
        f"cannot subscribe to dataset no-such-dataset: rejected ({host}): the handshake was answered 403; "
        "the webhook token of no-such-dataset does not open dataset no-such-dataset"
    )
    assert log.count(problem) == 1
    with Store(env["PROBE_DB_PATH"]) as store:
        assert store.note(note_key(NoteOwner.LISTENER, "no-such-dataset")).startswith(
            f"rejected ({host}): the handshake was answered 403"
        )


def test_a_store_deleted_under_the_listener_is_reported_and_never_silently_recreated(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    env = emulator.env(tmp_path)
    listener = start_probe("listener", env, tmp_path)
    store_path = Path(env["PROBE_DB_PATH"])
    try:
        wait_until(lambda: emulator.subscribers() == 1, 15, "the listener to subscribe")
        store_path.rename(tmp_path / "moved-away.sqlite3")
        wait_until(lambda: "was deleted while the stack runs" in listener.output(), 10, "the error logged")
    finally:
        assert listener.stop() == 0
    again = start([PYTHON, "-m", "probe_listener"], tmp_path / "again.log", env=env)
    assert again.popen.wait(20) == ExitStatus.STORE
    assert "is missing" in again.output()
    assert not store_path.exists()  # no new store, no new app_id


def _ours(pipe: Pipeline, seqno: int, **extra: object) -> str:
    """A frame with our app_id and a real seqno, as anyone on the dataset can write one."""
    row = pipe.rows()[seqno]
    app_id = store_app_id(pipe.env)
    event = {"app_id": app_id, "seqno": seqno, "time_sent": _iso(row.sent_at), "dataset": "probe-dataset"}
    event.update(extra)
    return json.dumps(event) + "\n"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")


def test_frames_that_cannot_be_hashed_never_cost_the_subscription_nor_hide_losses(pipeline) -> None:
    """Issue 22.1: a lone surrogate (UnicodeEncodeError) or ~992 levels of nesting (RecursionError in
    the digest's json.dumps) in an event of ours, injected every 0.2 s during 30 % drops."""
    pipe: Pipeline = pipeline(EVENT_INTERVAL_SECONDS=0.05)
    pipe.emulator.faults(drop_rate=0.3, seed=7)
    pipe.start_sender()
    pipe.send_until(5)
    injected = 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        seqno = max(pipe.rows())
        nested = "[" * 992 + "]" * 992
        assert pipe.emulator.inject(text=_ours(pipe, seqno, z="\ud800")) == 1
        assert pipe.emulator.inject(text=_ours(pipe, seqno)[:-2] + f', "n": {nested}}}\n') == 1
        injected += 2
        time.sleep(0.2)  # the injection's own pace, as in the attack
    pipe.finish()
    samples = pipe.metrics()
    assert metric(samples, "probe_websocket_disconnects_total") == 0
    assert metric(samples, "probe_events_unobserved_total") == 0
    dropped = sum(e["fate"] == "dropped" for e in pipe.truth())
    assert dropped > 10 and metric(samples, "probe_events_lost_total") == dropped
    handled = metric(samples, "probe_events_malformed_total") + metric(samples, "probe_events_corrupted_total")
    assert handled == injected
    assert "Traceback" not in pipe.listener.output()


def test_predicted_copies_resealed_by_a_peer_are_forged_and_the_losses_stay_lost(pipeline) -> None:
    """Issue 22.8: the pipeline drops everything; a peer on the dataset injects predicted copies,
    sealed the old way (unkeyed SHA-256) or not at all, at the right time. None may count."""
    pipe: Pipeline = pipeline(EVENT_INTERVAL_SECONDS=0.1)
    pipe.emulator.faults(drop_rate=1.0)
    pipe.start_sender()
    forged = 0
    seen: set[int] = set()
    deadline = time.monotonic() + 60  # the sender may take seconds to start on a busy machine
    while forged < 30 and time.monotonic() < deadline:
        for seqno in sorted(set(pipe.rows()) - seen):
            seen.add(seqno)
            copy = json.loads(_ours(pipe, seqno))
            if seqno % 2:
                body = {k: v for k, v in copy.items()}
                canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                copy["digest"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
            assert pipe.emulator.inject(text=json.dumps(copy) + "\n") == 1
            forged += 1
        time.sleep(0.05)
    pipe.finish()
    samples = pipe.metrics()
    assert forged >= 30
    assert metric(samples, "probe_events_received_total") == 0
    assert metric(samples, "probe_events_malformed_total", reason="forged") == forged
    posted = sum(1 for r in pipe.rows().values() if r.post_state == "ok")
    assert metric(samples, "probe_events_lost_total") == posted
