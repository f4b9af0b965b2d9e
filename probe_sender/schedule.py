"""The send schedule: fixed rate from the first send, no drift, no catch-up bursts."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    index: int  # slot number since the first send
    due: float  # monotonic time it was due
    skipped: int  # slots given up before this one because the process stalled


CATCH_UP = 0.25  # lateness up to this is ordinary scheduling noise at high rates, not a stall


def next_slot(start: float, interval: float, next_index: int, now: float) -> Slot | None:
    """The slot to fire at `now`, or None when slot `next_index` is not due yet.

    Slot k is due at start + k * interval, computed from the first send rather than
    from the previous one, so errors never accumulate. A slot fired a little late
    (up to one interval, or CATCH_UP seconds at high rates) still counts. When the
    process wakes up later than that (a long GC, a suspended VM), the missed slots
    are skipped and counted instead of being fired as a burst.
    """
    due = start + next_index * interval
    if now < due:
        return None
    if now - due <= max(interval, CATCH_UP):
        return Slot(next_index, due, 0)
    latest = math.floor((now - start) / interval)
    return Slot(latest, start + latest * interval, latest - next_index)
