"""The metrics program's readiness rule and its sweep of dead processes' live gauges."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from shared import config
from shared.metrics_server import dead_pids, readiness
from shared.store import Store
from tests.helpers import ROOT


def test_readiness_says_why_not(tmp_path: Path) -> None:
    cfg = config.load({"PROBE_CONFIG": str(ROOT / "probe.yaml"), "EVENT_INTERVAL_SECONDS": "1",
                       "POST_TIMEOUT_SECONDS": "2"})  # fmt: skip
    store = Store(tmp_path / "s.db")
    now = time.time()
    assert readiness(cfg, store, now) == (False, "listener is not subscribed")
    sub = store.subscription_opened("probe-dataset", now - 60)
    store.subscription_alive(sub, now - 1)
    assert readiness(cfg, store, now) == (False, "no successful post yet")
    app = store.app_id()
    seqno = store.record_send(app, "probe-dataset", "1", now - 30)
    store.record_post(app, seqno, True, None, now - 30)
    ready, reason = readiness(cfg, store, now)
    assert not ready and reason == "last successful post 30s ago (limit 5s)"
    seqno = store.record_send(app, "probe-dataset", "1", now - 1)
    store.record_post(app, seqno, True, None, now - 1)
    assert readiness(cfg, store, now) == (True, "ready")
    store.subscription_alive(sub, now - 60)  # the listener's heartbeat went stale
    assert readiness(cfg, store, now)[0] is False


def test_dead_pids_are_found_from_live_gauge_files(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        for name in (f"gauge_livemostrecent_{gone.pid}.db", f"gauge_livemostrecent_{alive.pid}.db",
                     f"counter_{gone.pid}.db", f"gauge_max_{gone.pid}.db"):  # fmt: skip
            (tmp_path / name).write_bytes(b"")
        assert dead_pids(str(tmp_path)) == {gone.pid}
    finally:
        alive.kill()
        alive.wait()
