"""The listener's store full (a file-size limit on its process), then free again: what the
platform sees of it meanwhile, against what the listener put on record."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import psutil
import pytest

from tests.helpers import EmulatorClient, metric, read_metrics, start_probe, wait_until

pytestmark = pytest.mark.timeout(180)

RECONNECT_MAX = 10.0
# After this many failed attempts the backoff is at its cap: every wait is at least half of it.
CAPPED_AFTER = 8


def _lifetimes(truth: dict, since: float, until: float) -> list[float]:
    """How long each connection the emulator served from `since` to `until` lasted (so far)."""
    subs = [s for s in truth["subscribers"] if since <= s["connected_at"] < until]
    return [(s["closed_at"] or truth["now"]) - s["connected_at"] for s in subs]


def test_a_connection_whose_interval_cannot_be_recorded_is_closed_not_left_to_the_platform(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    """While the store is full, each reconnect opens a connection it cannot put on record. Left
    open through the backoff, the platform would deliver to a subscriber nobody reads, and the
    events sent meanwhile would look seen by the platform yet unobserved by the probe."""
    env = emulator.env(tmp_path, RECONNECT_MAX_SECONDS=RECONNECT_MAX)
    listener = start_probe("listener", env, tmp_path)
    errors = lambda: metric(  # noqa: E731
        read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"])), "probe_store_errors_total", operation="subscription"
    )
    proc = psutil.Process(listener.popen.pid)
    try:
        wait_until(lambda: emulator.subscribers() == 1, 15, "the listener to subscribe")
        hard = proc.rlimit(psutil.RLIMIT_FSIZE)[1]  # kept: raising a hard limit again takes CAP_SYS_RESOURCE
        full = time.time()
        proc.rlimit(psutil.RLIMIT_FSIZE, (1, hard))  # no write past a file's first byte: every store write fails
        # The heartbeat fails, then every reconnect; until the backoff sits at its cap.
        wait_until(lambda: errors() >= CAPPED_AFTER + 1, 120, "reconnects failing on the store until the cap")
        proc.rlimit(psutil.RLIMIT_FSIZE, (hard, hard))
        lifted = time.time()
        wait_until(
            lambda: any(a > lifted for a, _ in _recorded(env)), RECONNECT_MAX * 3, "the listener on record again"
        )
        lifetimes = _lifetimes(emulator.truth(), full, lifted)
        subscribers = emulator.subscribers()
    finally:
        assert listener.stop() == 0, listener.output()
    assert len(lifetimes) >= CAPPED_AFTER - 1, lifetimes  # the attempts did reach the platform
    assert subscribers == 1  # the one on record, and none left open behind it
    # A capped wait is at least RECONNECT_MAX / 2: a connection held through one would last that long.
    assert max(lifetimes) < RECONNECT_MAX / 2, lifetimes


def _recorded(env: dict[str, str]) -> list[tuple[float, float]]:
    """The listener's intervals as its store has them (an open one: until now)."""
    with closing(sqlite3.connect(f"file:{env['PROBE_DB_PATH']}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT connected_at, disconnected_at FROM subscriptions").fetchall()
    return [(a, b if b is not None else float("inf")) for a, b in rows]
