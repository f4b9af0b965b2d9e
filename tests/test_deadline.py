"""The Watchdog's one alarm thread: each deadline fires on time, and only when its call is still running."""

from __future__ import annotations

import threading
import time

from shared.deadline import Watchdog


def test_a_call_that_ends_in_time_is_never_cut() -> None:
    fired = threading.Event()
    with Watchdog(0.2, fired.set) as dog:
        pass
    time.sleep(0.3)  # past the deadline: the alarm must not go off for a call that ended
    assert not fired.is_set() and not dog.fired


def test_a_shorter_deadline_added_after_a_longer_one_fires_first_and_on_time() -> None:
    long_fired, short_fired = threading.Event(), threading.Event()
    with Watchdog(5.0, long_fired.set):
        started = time.monotonic()
        with Watchdog(0.2, short_fired.set) as short:
            assert short_fired.wait(2.0)
            took = time.monotonic() - started
        assert short.fired and 0.19 <= took < 2.5, took  # not before its deadline; long before the other's
        assert not long_fired.is_set()


def test_many_calls_in_a_row_each_get_their_own_deadline() -> None:
    hits = []
    for i in range(50):
        with Watchdog(10.0, lambda i=i: hits.append(i)):
            pass
    with Watchdog(0.1, lambda: hits.append("cut")) as dog:
        deadline = time.monotonic() + 2
        while not dog.fired and time.monotonic() < deadline:
            time.sleep(0.01)
    assert hits == ["cut"]
