"""When the sender gives up (MAX_CONSECUTIVE_ERRORS), and how long a restart waits after giving up.

The original service exited after too many failed posts so that it was
restarted; this keeps that rule, but as pure logic that tests can drive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum

BACKOFF_FIRST = 10.0
BACKOFF_MAX = 600.0
MEMORY = 3600.0  # a fail-out older than this no longer slows the next start


def fail_out_delay(count: int, last_at: float, now: float) -> float:
    """Pause before sending after `count` fail-outs in a row, so a long collector outage
    does not become a restart loop (each restart leaves metric files behind)."""
    if count <= 0 or now - last_at > MEMORY:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (count - 1))


@dataclass
class FailOutTracker:
    """Counts failed posts in a row; post threads report to it concurrently."""

    limit: int  # 0 = never give up
    on_record: bool = False  # earlier fail-outs are stored; the first success must clear them
    consecutive: int = 0
    failed_out: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def success(self) -> bool:
        """A post succeeded; True when the stored record of earlier fail-outs must be cleared now."""
        with self._lock:
            self.consecutive = 0
            self.failed_out = False
            clear, self.on_record = self.on_record, False
            return clear

    def failure(self) -> bool:
        """A post failed for good; True exactly once: when this failure reaches the limit."""
        with self._lock:
            self.consecutive += 1
            if self.limit > 0 and self.consecutive >= self.limit and not self.failed_out:
                self.failed_out = True
                return True
            return False


class FailOut(StrEnum):
    NO = "no"
    DATASET = "dataset"  # this dataset just reached the limit; the others still post
    ALL = "all"  # every dataset has: the sender exits, to be restarted


class FailOutGroup:
    """MAX_CONSECUTIVE_ERRORS across datasets: the sender gives up (and is restarted) only when
    every dataset has failed that many posts in a row. A restart helps when the process or its
    credentials are wedged, which shows on every dataset; one broken dataset must not stop the
    schedules of the others, so it keeps being probed (and counted) at its interval instead."""

    def __init__(self, limit: int, names: list[str], on_record: bool = False) -> None:
        self.limit = limit
        self._trackers = {name: FailOutTracker(limit) for name in names}
        self._on_record = on_record
        self._lock = threading.Lock()
        self.failed_out = False

    def success(self, name: str) -> bool:
        """A post of `name` succeeded; True when the stored record of earlier fail-outs must be cleared."""
        self._trackers[name].success()
        with self._lock:
            clear, self._on_record = self._on_record, False
            return clear

    def failure(self, name: str) -> FailOut:
        """A post of `name` failed for good: did that make it, or everything, fail out (once each)?"""
        reached = self._trackers[name].failure()
        with self._lock:
            if not reached or self.failed_out:
                return FailOut.NO
            if all(t.failed_out for t in self._trackers.values()):
                self.failed_out = True
                return FailOut.ALL
            return FailOut.DATASET

    def dataset_failed_out(self, name: str) -> bool:
        return self._trackers[name].failed_out
