"""Giving up after MAX_CONSECUTIVE_ERRORS, and the restart backoff, as pure logic."""

from __future__ import annotations

import threading

from probe_sender.fail_out import FailOutTracker, fail_out_delay


def test_the_limit_is_reached_once_and_a_success_resets_the_count() -> None:
    tracker = FailOutTracker(limit=3)
    assert [tracker.failure(), tracker.failure()] == [False, False]
    assert tracker.success() is False  # nothing on record to clear
    assert [tracker.failure(), tracker.failure(), tracker.failure()] == [False, False, True]
    assert tracker.failed_out
    assert tracker.failure() is False  # said once only, however many posts still fail


def test_zero_means_never_give_up() -> None:
    tracker = FailOutTracker(limit=0)
    assert not any(tracker.failure() for _ in range(1000))
    assert not tracker.failed_out


def test_the_first_success_clears_earlier_fail_outs_once() -> None:
    tracker = FailOutTracker(limit=5, on_record=True)
    assert tracker.success() is True
    assert tracker.success() is False


def test_concurrent_failures_reach_the_limit_exactly_once() -> None:
    tracker = FailOutTracker(limit=100)
    reached: list[bool] = []
    lock = threading.Lock()

    def fail() -> None:
        for _ in range(50):
            result = tracker.failure()
            with lock:
                reached.append(result)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reached.count(True) == 1 and tracker.consecutive == 400


def test_restart_backoff_doubles_is_capped_and_forgotten_after_an_hour() -> None:
    assert fail_out_delay(0, 100.0, 110.0) == 0.0
    assert [fail_out_delay(n, 100.0, 110.0) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]
    assert fail_out_delay(20, 100.0, 110.0) == 600.0
    assert fail_out_delay(3, 100.0, 100.0 + 3601) == 0.0
