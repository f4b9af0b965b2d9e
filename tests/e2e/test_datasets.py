"""Three datasets in one probe against the emulator, each with its own fault: drops on one, a
websocket outage on another, a collector answering 500 on the third. Every event of every
dataset ends in the state the emulator's truth implies, and no fault leaks into another
dataset's numbers, schedule or subscription.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.emulator import EmulatorClient, serve_emulator
from testkit.probe import metric, read_events, read_metrics, start_pipeline, store_app_id, store_in_flight
from testkit.process import Proc, show_logs, stop_all, wait_until
from testkit.truth import implied_state
from tests.e2e.harness import failed

pytestmark = pytest.mark.timeout(240)

LOSS = 2.0
CONFIG = f"""environment: local
sender:
  event_interval_seconds: 0.05
  startup_wait_seconds: 10
  max_consecutive_errors: 5
  payload_bytes: 400
collector:
  post_timeout_seconds: 0.5
websocket:
  reconnect_max_seconds: 0.5
listener:
  loss_timeout_seconds: {LOSS}
datasets:
  - id: drops
  - id: outage
  - id: errors
"""


def covered(intervals: list[tuple[float, float]], start: float, end: float) -> bool:
    return any(a <= start and end <= b for a, b in intervals)


def touches(intervals: list[tuple[float, float]], start: float, end: float, margin: float) -> bool:
    """Whether the window comes within `margin` of a time the dataset had no subscription."""
    return not covered([(a + margin, b - margin) for a, b in intervals], start, end)


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[Proc]]:
    """The processes a test starts (emulator included), stopped when it ends; their logs shown if it failed."""
    started: list[Proc] = []
    yield started
    stop_all(started, timeout=15)
    show_logs(failed(request), tmp_path, sorted(log.name for log in tmp_path.glob("*.log")), 4000)


def test_three_datasets_each_with_its_own_fault_tell_the_truth_and_keep_to_themselves(
    tmp_path: Path, procs: list[Proc]
) -> None:
    emulator: EmulatorClient = serve_emulator(
        *(a for d in ("drops", "outage", "errors") for a in ("--dataset", f"{d}/1"))
    )
    procs.append(emulator.proc)
    (tmp_path / "probe.yaml").write_text(CONFIG)
    env = emulator.env(tmp_path, PROBE_CONFIG=str(tmp_path / "probe.yaml"))
    emulator.faults("drops", drop_rate=0.3, seed=7)
    emulator.faults("errors", collector_error_rate=1.0, collector_error_statuses=[500])
    listener, sender = start_pipeline(emulator, env, tmp_path, 3)
    procs += [listener, sender]
    wait_until(lambda: len(read_events(env)) >= 60, 30, "events of every dataset")

    # The outage: the subscription of one dataset is closed and refused for 2 s.
    emulator.faults("outage", refuse_connections=True)
    assert (
        emulator.session.post(
            f"{emulator.base}/_emulator/close", json={"code": 1011, "dataset": "outage"}, timeout=5
        ).json()["closed"]
        == 1
    )
    time.sleep(2.0)  # the outage's length: the time it lasts is the thing under test
    emulator.faults("outage", refuse_connections=False)
    wait_until(lambda: emulator.subscribers() == 3, 15, "the outage dataset to resubscribe")
    wait_until(lambda: len(read_events(env)) >= 700, 40, "more events after the outage")
    assert sender.popen.poll() is None  # one dataset failing out does not restart the sender
    assert sender.stop() == 0, sender.output()
    wait_until(lambda: store_in_flight(env) == 0, LOSS + 15, "every event judged")

    app_id = store_app_id(env)
    truth = {(e["dataset"], e["seqno"]): e for e in emulator.truth()["events"] if e["app_id"] == app_id}
    now = time.time()
    intervals: dict[str, list[tuple[float, float]]] = {}
    for sub in emulator.truth()["subscribers"]:
        intervals.setdefault(sub["dataset"], []).append((sub["connected_at"], sub["closed_at"] or now))
    states: dict[str, dict[str, int]] = {}
    strict = 0
    for row in read_events(env):
        event = truth.get((row.dataset, row.seqno))
        per = states.setdefault(row.dataset, {})
        per[row.state] = per.get(row.state, 0) + 1
        window = (row.sent_at, row.sent_at + LOSS)
        if event is None:
            assert row.state == "post_failed", row
            continue
        if touches(intervals[row.dataset], *window, margin=1.5):
            assert row.state in ("received", "unobserved", "lost"), row
            continue
        assert (row.state, row.receive_count) == implied_state(event), (row, event["fate"])
        strict += 1
    assert strict > 150  # the comparison is not vacuous

    # Each fault shows in its own dataset only.
    assert set(states["errors"]) == {"post_failed"}
    assert states["drops"].get("lost", 0) > 10 and "post_failed" not in states["drops"]
    assert "unobserved" not in states["drops"] and "unobserved" not in states["errors"]
    assert states["outage"].get("unobserved", 0) > 5 and "lost" not in states["outage"]
    assert "post_failed" not in states["outage"]
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    lost = {d: metric(samples, "probe_events_lost_total", dataset=d) for d in states}
    assert lost == {"drops": states["drops"]["lost"], "outage": 0, "errors": 0}
    errors = {d: metric(samples, "probe_event_post_errors_total", dataset=d) for d in states}
    assert errors["errors"] == states["errors"]["post_failed"] and errors["drops"] == errors["outage"] == 0
    disconnects = {d: metric(samples, "probe_websocket_disconnects_total", dataset=d) for d in states}
    assert disconnects["outage"] >= 1 and disconnects["drops"] == disconnects["errors"] == 0
    # It fails out after every 5 failed posts in a row; how often it came back to try depends on
    # how long the run took, which a busy machine stretches.
    fail_outs = metric(samples, "probe_sender_fail_outs_total", dataset="errors")
    assert 1 <= fail_outs <= states["errors"]["post_failed"] // 5
    for name in states:
        received = metric(samples, "probe_events_received_total", dataset=name)
        assert received == states[name].get("received", 0) + states[name].get("late", 0)


def test_copies_altered_on_the_way_are_counted_corrupted_and_still_classified(
    tmp_path: Path, procs: list[Proc]
) -> None:
    emulator = serve_emulator()
    procs.append(emulator.proc)
    env = emulator.env(
        tmp_path,
        EVENT_INTERVAL_SECONDS=0.02,
        PAYLOAD_BYTES=2000,
        LOSS_TIMEOUT_SECONDS=LOSS,
        POST_TIMEOUT_SECONDS=1,
        STARTUP_WAIT_SECONDS=10,
    )
    emulator.faults(corrupt_rate=0.2, duplicate_rate=0.1, seed=3)
    listener, sender = start_pipeline(emulator, env, tmp_path, 1)
    procs += [listener, sender]
    wait_until(lambda: len(read_events(env)) >= 200, 30, "200 events")
    assert sender.stop() == 0
    wait_until(lambda: store_in_flight(env) == 0, LOSS + 15, "every event judged")
    app_id = store_app_id(env)
    truth = {e["seqno"]: e for e in emulator.truth()["events"] if e["app_id"] == app_id}
    altered = sum(len(e["corrupted_copies"]) for e in truth.values())
    assert altered > 20
    for row in read_events(env):
        assert (row.state, row.receive_count) == implied_state(truth[row.seqno]), row
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_events_corrupted_total") == altered
    assert metric(samples, "probe_events_malformed_total") == 0
    assert listener.stop() == 0  # it says what it held back of its log when it ends
    log = (tmp_path / "listener.log").read_text()
    shown = sum(
        "arrived altered (padding differs, first at offset" in line and " more like this " not in line
        for line in log.splitlines()
    )
    held_back = sum(  # more than 10 a minute are summarised, not dropped
        int(line.split(" more like this", 1)[0].rsplit(" ", 1)[1])
        for line in log.splitlines()
        if " more like this in the last " in line and "arrived altered" in line
    )
    assert shown + held_back == altered
