"""The send schedule as pure logic: fixed rate, no drift, stalls skipped and counted, never a burst."""

from __future__ import annotations

import pytest

from probe_sender.schedule import Slot, next_slot


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
