"""The sender as a real process against the emulator: schedule, auth, retries, accounting."""

from __future__ import annotations

import itertools
import math
import signal
import statistics
import time
from pathlib import Path

import pytest
import requests

from probe_sender.schedule import Slot, next_slot
from probe_sender.sender import fail_out_delay
from tests.helpers import Emulator, metric, read_events, read_metrics, start_emulator, start_probe, wait_until

pytestmark = pytest.mark.timeout(120)


def test_schedule_is_fixed_rate_and_skips_stalls() -> None:
    assert next_slot(100.0, 1.0, 0, 99.9) == Slot(0, 100.0, 0)  # not due yet: wait for it
    assert next_slot(100.0, 1.0, 1, 101.4) == Slot(1, 101.0, 0)  # a little late: fire, no skip
    assert next_slot(100.0, 1.0, 2, 105.2) == Slot(5, 105.0, 3)  # woke up 3.2 slots late: skip 3, fire slot 5
    assert next_slot(100.0, 1.0, 2, 105.7) == Slot(6, 106.0, 4)  # slot 5 is too late too: wait for slot 6
    assert next_slot(0.0, 0.001, 0, 0.009).skipped == 0  # 9 ms late at 1000/s: timer noise, caught up
    assert next_slot(0.0, 0.001, 0, 0.05).skipped == 40  # 50 ms late at 1000/s: a stall, no burst
    assert next_slot(0.0, 0.02, 0, 0.164) == Slot(8, 0.16, 8)  # the stall CI once saw at 20 ms
    # due times come from the start, so they never drift
    assert next_slot(0.0, 0.02, 199, 3.98).due == pytest.approx(3.98)


def rows(env: dict[str, str]) -> list[tuple]:
    """(seqno, sent_at, post_state, post_error, state) of every event, by seqno."""
    return [(e.seqno, e.sent_at, e.post_state, e.post_error, e.state) for e in read_events(env)]


def run_sender(emulator: Emulator, tmp: Path, **env: object):
    environment = emulator.env(tmp, **env)
    return start_probe("sender", environment, tmp), environment


def assert_on_schedule(sent: list[float], interval: float, samples: dict) -> None:
    """N events in N intervals, with no burst.

    Every slot up to the last send was either sent or counted as skipped: a loaded
    machine may really stall the process, which is allowed if it is rare and counted.
    A slot fires at most half an interval late, so no two sends are ever closer than that.
    """
    stalled = metric(samples, "probe_sender_skipped_slots_total", reason="stall")
    assert metric(samples, "probe_sender_skipped_slots_total", reason="backpressure") == 0
    slots = math.floor((sent[-1] - sent[0]) / interval + 0.25) + 1
    assert len(sent) + stalled == slots and stalled <= slots // 20, (len(sent), stalled, slots)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) > interval / 2 - 0.002, min(gaps)


def test_no_drift_over_200_intervals_at_20ms(emulator: Emulator, tmp_path: Path) -> None:
    interval = 0.02
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=interval)
    wait_until(lambda: len(rows(env)) >= 210, 30, "210 events")
    assert proc.stop() == 0, proc.output()
    sent = [r[1] for r in rows(env)]
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert_on_schedule(sent, interval, samples)
    # no drift: the sends around the 200th interval sit on their slots as closely as the first ones
    offsets = [(s - sent[0] + interval / 2) % interval - interval / 2 for s in sent]
    assert abs(statistics.median(offsets[190:210])) < 0.003, offsets[190:210]
    assert all(r[2] == "ok" for r in rows(env))
    assert metric(samples, "probe_events_posted_total") == len(sent)
    truth = emulator.truth()["events"]
    assert sorted(e["seqno"] for e in truth) == list(range(1, len(sent) + 1))


def test_token_expiring_mid_run_is_renewed_without_a_failed_post(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults(token_lifetime_seconds=1)
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05)
    wait_until(
        lambda: metric(read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"])), "probe_token_requests_total") >= 4,
        20,
        "three token renewals",
    )
    assert proc.stop() == 0
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_token_requests_total", result="error") == 0
    assert metric(samples, "probe_event_post_errors_total") == 0
    assert {r[2] for r in rows(env)} == {"ok"}


def test_a_401_renews_the_token_once_and_costs_no_event(emulator: Emulator, tmp_path: Path) -> None:
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05)
    wait_until(lambda: len(rows(env)) >= 10, 20, "ten events")
    requests.post(f"{emulator.base}/_emulator/revoke-tokens", timeout=5).raise_for_status()
    count = len(rows(env))
    wait_until(lambda: len(rows(env)) >= count + 10, 20, "ten more events")
    assert proc.stop() == 0
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_event_post_errors_total") == 0
    assert metric(samples, "probe_token_requests_total", result="ok") == 2
    sent = rows(env)
    assert {r[2] for r in sent} == {"ok"}
    assert sorted(e["seqno"] for e in emulator.truth()["events"]) == [r[0] for r in sent]


def test_token_endpoint_down_is_retried_with_backoff_not_in_a_tight_loop(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults(token_down=True)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05, POST_TIMEOUT_SECONDS=0.3, MAX_CONSECUTIVE_ERRORS=0
    )
    wait_until(lambda: sum(r[3] == "auth" for r in rows(env)) >= 40, 20, "40 posts failed for want of a token")
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    failed = metric(samples, "probe_event_post_errors_total", reason="auth")
    assert failed >= 40
    assert metric(samples, "probe_token_requests_total", result="error") <= 6  # backoff: 0.5 s, 1 s, 2 s, ...
    emulator.faults(token_down=False)
    wait_until(lambda: rows(env)[-1][2] == "ok", 30, "posts to succeed once the token endpoint is back")
    assert proc.stop() == 0
    assert metric(read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"])), "probe_token_requests_total", result="ok") == 1


def test_auth_can_be_switched_off_for_a_collector_that_needs_none(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path, "--no-collector-auth")
    try:
        proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05, AUTH_ENABLED="false")
        wait_until(lambda: sum(r[2] == "ok" for r in rows(env)) >= 10, 20, "ten posts without a token")
        assert proc.stop() == 0
    finally:
        emulator.proc.stop()
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_token_requests_total") == 0
    assert metric(samples, "probe_event_post_errors_total") == 0


def test_503s_are_retried_and_a_post_that_keeps_failing_counts_once(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults(collector_error_rate=0.5, collector_error_statuses=[503], seed=3)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.1, POST_TIMEOUT_SECONDS=3, MAX_CONSECUTIVE_ERRORS=0
    )
    wait_until(lambda: sum(r[2] == "ok" for r in rows(env)) >= 15, 30, "15 posts through the 503s")
    emulator.faults(collector_error_rate=1.0)
    count = len(rows(env))
    # every post from now fails for good; give each its 3 s deadline
    wait_until(lambda: sum(r[2] == "failed" for r in rows(env)) >= 3, 30, "posts that keep failing")
    proc.stop()
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    sent = rows(env)
    failed = [r for r in sent if r[2] == "failed"]
    # a post of the 50% phase may also run out of retries (about 1 in 60): it is counted the same way
    assert all(r[3] == "http_5xx" for r in failed)
    assert len([r for r in failed if r[0] > count]) >= 3
    assert len(failed) < len(sent) - 10  # most posts of the 50% phase got through by retrying
    assert metric(samples, "probe_event_post_errors_total", reason="http_5xx") == len(failed)
    assert metric(samples, "probe_event_post_errors_total") == len(failed)
    assert metric(samples, "probe_events_posted_total") == sum(r[2] == "ok" for r in sent)
    assert metric(samples, "probe_event_post_retries_total") > len(failed) * 3
    assert not [r for r in sent if r[2] == "pending"]  # SIGTERM let in-flight posts finish


def test_max_consecutive_errors_exits_after_exactly_that_many_posts(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults(collector_error_rate=1.0)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.5, POST_TIMEOUT_SECONDS=0.3, MAX_CONSECUTIVE_ERRORS=3
    )
    code = proc.popen.wait(20)
    assert code != 0
    assert "3 consecutive failed posts" in proc.output()
    sent = rows(env)
    assert len(sent) == 3 and {r[2] for r in sent} == {"failed"}


def test_a_restart_after_a_fail_out_backs_off_until_a_post_succeeds(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults(collector_error_rate=1.0)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.2, POST_TIMEOUT_SECONDS=0.1, MAX_CONSECUTIVE_ERRORS=2
    )
    assert proc.popen.wait(20) == 3
    again = start_probe("sender", env, tmp_path, tag="-2")
    wait_until(lambda: "waiting 10s before sending" in again.output(), 20, "the restart backoff")
    assert len(rows(env)) == 2  # nothing sent while backing off
    assert again.stop() == 0  # and SIGTERM still stops it at once
    assert fail_out_delay(3, 100.0, 110.0) == 40.0 and fail_out_delay(20, 100.0, 110.0) == 600.0
    assert fail_out_delay(3, 100.0, 100.0 + 3601) == 0.0


def test_a_hanging_collector_does_not_delay_the_schedule(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults(collector_delay_ms=30_000)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05, POST_TIMEOUT_SECONDS=0.5, POST_CONCURRENCY=32,
        MAX_CONSECUTIVE_ERRORS=0,
    )  # fmt: skip
    wait_until(lambda: len(rows(env)) >= 40, 20, "40 sends while every post hangs")
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 3  # in-flight posts end by their deadline
    sent = rows(env)
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert_on_schedule([r[1] for r in sent], 0.05, samples)
    assert {r[3] for r in sent} == {"timeout"}
    assert metric(samples, "probe_event_post_errors_total", reason="timeout") == len(sent)


def test_sigkill_loses_no_recorded_event_and_the_sequence_continues(emulator: Emulator, tmp_path: Path) -> None:
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.02)
    wait_until(lambda: len(rows(env)) >= 50, 20, "50 events")
    proc.stop(signal.SIGKILL)
    first_run = rows(env)
    again = start_probe("sender", env, tmp_path, tag="-2")
    wait_until(lambda: len(rows(env)) >= len(first_run) + 50, 20, "50 more events")
    assert again.stop() == 0
    sent = rows(env)
    assert [r[0] for r in sent] == list(range(1, len(sent) + 1))  # one sequence, no gap, no reuse
    accepted = {e["seqno"] for e in emulator.truth()["events"]}
    assert accepted <= {r[0] for r in sent}  # every event that reached the collector is in the store
    assert {r[2] for r in sent[len(first_run) :]} == {"ok"}
