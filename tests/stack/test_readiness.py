"""The /readyz rule, against a real store in a temp directory."""

from __future__ import annotations

import time
from pathlib import Path

from probe_stack.verdict.readiness import readiness
from shared import config
from shared.store import NoteOwner, Store, note_key
from tests.helpers import ROOT


def test_readiness_says_why_not(tmp_path: Path) -> None:
    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "EVENT_INTERVAL_SECONDS": "1",
        "POST_TIMEOUT_SECONDS": "2",
    }
    cfg = config.load(env)
    now = time.time()
    with Store(tmp_path / "s.db") as store:
        assert readiness(cfg, store, now) == (False, "listener is not subscribed")
        sub = store.subscription_opened("probe-dataset", now - 60)
        store.subscription_alive(sub, now - 1)
        assert readiness(cfg, store, now) == (False, "no successful post yet")
        app = store.app_id()
        seqno = store.record_send(app, "probe-dataset", "1", now - 30)
        store.record_post(app, "probe-dataset", seqno, True, None, now - 30)
        assert readiness(cfg, store, now) == (False, "last successful post 30s ago (limit 5s)")
        seqno = store.record_send(app, "probe-dataset", "1", now - 1)
        store.record_post(app, "probe-dataset", seqno, True, None, now - 1)
        assert readiness(cfg, store, now) == (True, "ready")
        store.subscription_alive(sub, now - 60)  # the listener's heartbeat went stale
        assert readiness(cfg, store, now) == (False, "listener is not subscribed")


def test_readiness_names_a_wrong_dataset_and_a_vanished_store(tmp_path: Path) -> None:
    env = {"PROBE_CONFIG": str(ROOT / "probe.yaml"), "ORIGO_ENVIRONMENT": "local"}
    cfg = config.load(env)
    now = time.time()
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.set_note(
            note_key(NoteOwner.LISTENER, "probe-dataset"),
            "dataset probe-dataset is not known to the subscription (http_404)",
        )
        assert readiness(cfg, store, now) == (
            False,
            "listener is not subscribed: dataset probe-dataset is not known to the subscription (http_404)",
        )
        store.set_note(note_key(NoteOwner.LISTENER, "probe-dataset"), None)
        assert readiness(cfg, store, now) == (False, "listener is not subscribed")
        path.rename(tmp_path / "moved.db")
        assert readiness(cfg, store, now) == (False, f"store {path} was deleted while the stack runs")
        Store(path).close()
        assert readiness(cfg, store, now) == (False, f"store {path} was replaced by another file while the stack runs")


def test_with_several_datasets_ready_only_when_every_one_is(tmp_path: Path) -> None:
    (tmp_path / "probe.yaml").write_text(
        "environment: local\nsender:\n  event_interval_seconds: 1\ncollector:\n  post_timeout_seconds: 2\n"
        "datasets:\n  - id: a\n  - id: b\n"
    )
    cfg = config.load({"PROBE_CONFIG": str(tmp_path / "probe.yaml")})
    now = time.time()
    with Store(tmp_path / "s.db") as store:
        app = store.app_id()
        for name in ("a", "b"):
            sub = store.subscription_opened(name, now - 60)
            store.subscription_alive(sub, now - 1)
        seqno = store.record_send(app, "a", "1", now - 1)
        store.record_post(app, "a", seqno, True, None, now - 1)
        store.set_note(
            note_key(NoteOwner.SENDER, "b"), "dataset b/1 is not known to the collector (404): check its id and version"
        )
        assert readiness(cfg, store, now) == (
            False,
            "not ready: 1 of 2 datasets\na: ready\n"
            "b: no successful post yet: dataset b/1 is not known to the collector (404): check its id and version",
        )
        seqno = store.record_send(app, "b", "1", now - 1)
        store.record_post(app, "b", seqno, True, None, now - 1)
        assert readiness(cfg, store, now) == (True, "ready\na: ready\nb: ready")
