"""`probe status`: a readable table and JSON from the store, and a clear message without one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from shared.exits import ExitStatus
from shared.store import Store
from testkit.http_stub import Reply, serve
from tests.helpers import ROOT, free_port, probe_cmd


def run_status(db: Path, *args: str, metrics_port: int | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "PROBE_DB_PATH": str(db),
        # never the default: a demo running beside the suite answers there
        "METRICS_PORT": str(metrics_port or free_port()),
    }
    return subprocess.run(probe_cmd("status", *args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_status_shows_recent_events_and_totals(tmp_path: Path) -> None:
    db = tmp_path / "probe.sqlite3"
    with Store(db) as store:
        app = store.app_id()
        for i in range(5):
            seqno = store.record_send(app, "probe-dataset", "1", 1000.0 + i)
            store.record_post(app, "probe-dataset", seqno, i != 3, None if i != 3 else "http_5xx", 1000.1 + i)
        store.classify_arrival(app, "probe-dataset", 1, 1000.25)
        store.classify_arrival(app, "probe-dataset", 1, 1000.5)
    table = run_status(db, "--last", "3")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert app in lines[0] and "seqno" in lines[1]
    assert [line.split()[1] for line in lines[2:5]] == ["5", "4", "3"]
    assert "http_5xx" in lines[3] and "post_failed" in lines[3]
    (totals,) = [line for line in lines if line.startswith("totals probe-dataset:")]
    # The metrics' words: accepted and still awaited is `awaiting` (probe_events_in_flight), never `posted`.
    assert "received=1" in totals and "duplicates=1" in totals and "awaiting=3" in totals and "posted" not in totals
    assert "totals: events in the store, since it began" in table.stdout
    assert "counters: no stack answers on http://127.0.0.1:" in table.stdout  # nothing runs: said, not guessed
    doc = json.loads(run_status(db, "--json").stdout)
    assert doc["app_id"] == app and doc["totals"]["probe-dataset"]["post_failed"] == 1
    first = next(e for e in doc["events"] if e["seqno"] == 1)
    assert first["latency"] == 0.25 and first["receive_count"] == 2


def test_status_without_a_store_says_so(tmp_path: Path) -> None:
    result = run_status(tmp_path / "missing.sqlite3")
    assert result.returncode == ExitStatus.STORE and "no store" in result.stderr


def test_status_of_one_dataset_and_totals_per_dataset(tmp_path: Path) -> None:
    db = tmp_path / "probe.sqlite3"
    with Store(db) as store:
        app = store.app_id()
        for name in ("probe-dataset", "other", "other"):
            seqno = store.record_send(app, name, "1", 1000.0)
            store.record_post(app, name, seqno, True, None, 1000.1)
    doc = json.loads(run_status(db, "--json").stdout)
    # The metrics' words in JSON too: `posted` in the same document is the stack's counter of every
    # accepted event, so the store's accepted-and-still-awaited events are `awaiting`, as in the table.
    assert doc["totals"]["probe-dataset"]["awaiting"] == 1 and doc["totals"]["other"]["awaiting"] == 2
    assert "posted" not in doc["totals"]["other"] and "pending" not in doc["totals"]["other"]
    assert {e["state"] for e in doc["events"]} == {"awaiting"}
    only = json.loads(run_status(db, "--json", "--dataset", "other").stdout)
    assert set(only["totals"]) == {"other"} and {e["dataset"] for e in only["events"]} == {"other"}
    table = run_status(db, "--dataset", "other").stdout.splitlines()
    assert [line.split()[0] for line in table[2:4]] == ["other", "other"]
    unknown = run_status(db, "--dataset", "nope")
    assert unknown.returncode == ExitStatus.CONFIG and "known: other, probe-dataset" in unknown.stderr


def test_status_never_shows_another_stores_stack_as_its_counters(tmp_path: Path) -> None:
    """Whatever answers on METRICS_PORT (the demo's stack, another probe) is not this store's stack
    unless its probe_build_info carries this store's app_id: its counters are not shown as ours."""
    db = tmp_path / "probe.sqlite3"
    with Store(db) as store:
        app = store.app_id()
    other = (
        '# TYPE probe_build_info gauge\nprobe_build_info{version="1",app_id="ffffffff"} 1.0\n'
        '# TYPE probe_events_posted_total counter\nprobe_events_posted_total{dataset="probe-dataset"} 99.0\n'
    )
    with serve(lambda _: Reply(body=other.encode(), headers={"Content-Type": "text/plain"})) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        table = run_status(db, metrics_port=port)
        doc = json.loads(run_status(db, "--json", metrics_port=port).stdout)
    assert table.returncode == 0, table.stderr
    assert "posted=99" not in table.stdout
    assert f"counters: the stack on http://127.0.0.1:{port}/metrics is another store's (app_id ffffffff" in table.stdout
    assert f"this store's is {app}" in table.stdout
    assert doc["stack_counters"] is None and "another store's" in doc["stack_counters_scope"]
    mine = other.replace("ffffffff", app)
    with serve(lambda _: Reply(body=mine.encode(), headers={"Content-Type": "text/plain"})) as stub:
        table = run_status(db, metrics_port=int(stub.url.rsplit(":", 1)[1]))
    assert "counters probe-dataset: posted=99" in table.stdout
