"""Finding dead processes' live gauges, and the sweep's rate limit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from probe_stack.metrics.sweep import SweepClock, dead_pids


def test_dead_pids_are_found_from_live_gauge_files(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        names = [
            f"gauge_livemostrecent_{gone.pid}.db",
            f"gauge_livemostrecent_{alive.pid}.db",
            f"counter_{gone.pid}.db",
            f"gauge_max_{gone.pid}.db",
        ]
        for name in names:
            (tmp_path / name).write_bytes(b"")
        assert dead_pids(str(tmp_path)) == {gone.pid}
    finally:
        alive.kill()
        alive.wait()


def test_the_sweep_runs_at_most_once_a_second() -> None:
    clock = SweepClock(every=1.0)
    assert clock.due(100.0) is True
    assert [clock.due(100.2), clock.due(100.99)] == [False, False]
    assert clock.due(101.0) is True
    assert clock.due(101.5) is False
