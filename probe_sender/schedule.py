"""The send schedule: fixed rate from the first send, no drift, no catch-up bursts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class SkipReason(StrEnum):
    """Why a send slot went unused (the `reason` label of probe_sender_skipped_slots)."""

    STALL = "stall"  # the process was not run in time (GC, a suspended VM, an overloaded machine)
    BACKPRESSURE = "backpressure"  # every post slot was still busy
    STORE = "store"  # the event could not be recorded (disk full): never posted unrecorded


@dataclass(frozen=True)
class Slot:
    index: int  # slot number since the first send
    due: float  # monotonic time it is due
    skipped: int  # slots given up before this one because the process stalled


NOISE = 0.01  # lateness up to this is timer and scheduler noise at high rates, not a stall


def tolerance(interval: float) -> float:
    """How late a slot may still fire: half an interval, so two sends are never closer than
    half an interval, but never less than the noise of waking a thread on time."""
    return max(interval / 2, NOISE)


def next_slot(start: float, interval: float, next_index: int, now: float) -> Slot:
    """The slot to fire next, judged at `now`: slot `next_index` unless it is too late.

    Slot k is due at start + k * interval, computed from the first send rather than
    from the previous one, so errors never accumulate. A slot may fire a little late
    (see tolerance). When the process wakes up later than that (a long GC, a
    suspended VM), the missed slots are skipped and counted instead of being fired
    as a burst, and the schedule resumes at the first slot that is not too late
    (it may still lie ahead: the caller waits until it is due).
    """
    due = start + next_index * interval
    late = tolerance(interval)
    if now - due <= late:
        return Slot(next_index, due, 0)
    first_in_time = math.ceil((now - late - start) / interval - 1e-9)
    return Slot(first_in_time, start + first_in_time * interval, first_in_time - next_index)
