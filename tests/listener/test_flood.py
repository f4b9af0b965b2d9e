"""One dataset's flood against the listener process: its share of the CPU and of the log is bounded,
and the good dataset beside it keeps its numbers exact (issue 22.3, the listener's half)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from testkit import hostile
from tests.helpers import (
    Proc,
    metric,
    read_events,
    read_metrics,
    start_emulator,
    start_probe,
    store_app_id,
    store_in_flight,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

CONFIG = """environment: local
sender:
  event_interval_seconds: 0.05
  startup_wait_seconds: 10
collector:
  post_timeout_seconds: 1
websocket:
  reconnect_max_seconds: 0.5
listener:
  loss_timeout_seconds: 2
datasets:
  - id: good
  - id: flood
    websocket_url: "{flood_url}"
"""


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def test_a_flooding_subscription_gets_its_share_of_cpu_and_log_and_the_good_dataset_its_truth(
    tmp_path: Path, procs: list[Proc]
) -> None:
    emulator = start_emulator(tmp_path, "--dataset", "good/1", "--dataset", "flood/1")
    procs.append(emulator.proc)
    env = emulator.env(tmp_path, PROBE_CONFIG=str(tmp_path / "probe.yaml"))
    app_id = store_app_id(env)  # the flood knows our app_id: anyone on the dataset reads it
    with hostile.serve(hostile.flooding(hostile.forged_events(app_id, "flood"))) as flood:
        (tmp_path / "probe.yaml").write_text(CONFIG.format(flood_url=flood.ws_url))
        listener = start_probe("listener", env, tmp_path)
        procs.append(listener)
        wait_until(lambda: emulator.subscribers() == 1 and flood.connections, 20, "both subscriptions")
        sender = start_probe("sender", env, tmp_path)
        procs.append(sender)
        wait_until(lambda: len(read_events(env)) >= 20, 30, "events sent")
        process = psutil.Process(listener.popen.pid)
        before, started = sum(process.cpu_times()[:2]), time.monotonic()
        time.sleep(5)  # the window the listener's CPU is measured over
        share = (sum(process.cpu_times()[:2]) - before) / (time.monotonic() - started)
        assert sender.stop() == 0
        wait_until(lambda: store_in_flight(env) == 0 or _only_flood_open(env), 20, "the good events judged")
        samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    forged = metric(samples, "probe_events_malformed_total", dataset="flood", reason="forged")
    print(f"listener CPU share {share:.2f}, forged {forged:.0f}")
    assert forged > 500  # the flood was read, counted, and skipped
    assert share < 0.5, share  # a flood used to keep a whole core busy
    good = [e for e in read_events(env) if e.dataset == "good"]
    assert len(good) >= 20 and {e.state for e in good} == {"received"}
    assert metric(samples, "probe_events_lost_total", dataset="good") == 0
    assert metric(samples, "probe_events_malformed_total", dataset="good") == 0
    lines = [line for line in listener.output().splitlines() if "[flood]" in line and "forged" in line]
    assert len(lines) <= 15, len(lines)  # 10 a minute, then a summary: not one line per frame
    assert any("more like this in the last" in line for line in lines) or len(lines) <= 10


def _only_flood_open(env: dict[str, str]) -> bool:
    return all(e.state != "posted" for e in read_events(env) if e.dataset == "good")
