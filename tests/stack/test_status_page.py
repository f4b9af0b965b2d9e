"""The status page's parts in-process: the verdict rule, content negotiation, escaping, the kept
failures, the bounded read-only reader, and the page served beside the metrics."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
from html import escape
from pathlib import Path

import pytest
import requests
import yaml

from probe_stack.metrics import server as metrics_server
from probe_stack.metrics.pages import Pages, wants_html
from probe_stack.metrics.status_page import CSP, render
from probe_stack.verdict.figures import DatasetStatus, Snapshot, snapshot
from probe_stack.verdict.rule import Facts, Health, Limits, Why, judge
from shared import config
from shared.store import (
    FAILURE_DETAIL_MAX,
    FAILURES_KEPT,
    EventRow,
    EventState,
    FailureKind,
    FailureRow,
    PostState,
    Store,
    StoreReader,
)
from testkit.probe import metrics_env
from tests.helpers import ROOT, probe_cmd

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
CHROMIUM_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def facts(**changes: object) -> Facts:
    base = {"subscribed": True, "last_ok_post_age": 1.0, "max_post_age": 30.0}
    return Facts(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "health", "why", "ready"),
    [
        ({}, Health.HEALTHY, Why.OK, True),
        ({"subscribed": False, "last_ok_post_age": None}, Health.BLIND, Why.NOT_SUBSCRIBED, False),
        ({"last_ok_post_age": None}, Health.DOWN, Why.NO_POST_YET, False),
        ({"last_ok_post_age": 31.0}, Health.DOWN, Why.POSTS_STALE, False),
        ({"last_arrival_age": 121.0}, Health.DOWN, Why.NOTHING_ARRIVING, True),
        ({"loss_share": 0.02, "latency_p99": 99.0}, Health.DEGRADED, Why.LOSS, True),
        ({"loss_share": 0.01, "latency_p99": 31.0}, Health.DEGRADED, Why.LATENCY, True),
        ({"last_arrival_age": 119.0, "loss_share": 0.0, "latency_p99": 29.0}, Health.HEALTHY, Why.OK, True),
        # blind before down before degraded: the probe's own state is said first
        ({"subscribed": False, "last_arrival_age": 999.0, "loss_share": 1.0}, Health.BLIND, Why.NOT_SUBSCRIBED, False),
    ],
)
def test_one_rule_gives_each_verdict_and_whether_the_probe_is_ready(
    changes: dict, health: Health, why: Why, ready: bool
) -> None:
    verdict = judge(facts(**changes))
    assert (verdict.health, verdict.why, verdict.ready) == (health, why, ready)


def test_the_verdict_thresholds_are_the_alerts_defaults() -> None:
    params = yaml.safe_load((ROOT / "deploy/prometheus/alert-params.yaml").read_text())
    limits = Limits()
    assert limits.stale_after_seconds == params["stale_after_seconds"]
    assert limits.loss_ratio == params["loss_ratio"]
    assert limits.latency_p99_seconds == params["latency_p99_seconds"]


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        (PROMETHEUS_ACCEPT, False),
        (None, False),
        ("", False),
        ("*/*", False),  # curl
        ("text/plain", False),
        ("text/plain, text/html", False),  # a tie keeps the metrics
        ("text/*", False),
        (CHROMIUM_ACCEPT, True),
        ("text/html", True),
        ("text/html;q=0.9, text/plain;q=0.5", True),
        ("text/html;q=bogus, */*", False),
    ],
)
def test_only_a_request_preferring_html_gets_the_page_at_root(accept: str | None, page: bool) -> None:
    assert wants_html(accept) is page


def hostile_snapshot(now: float) -> Snapshot:
    ds = DatasetStatus(
        name=HOSTILE,
        verdict=judge(facts(subscribed=False, listener_note=HOSTILE)),
        recent=[EventRow(HOSTILE, 7, now - 5, EventState.POST_FAILED, PostState.FAILED, HOSTILE, None, 0)],
        failures=[FailureRow(HOSTILE, 7, now - 5, FailureKind.CORRUPTED, now, HOSTILE, EventState.RECEIVED)],
        latency=[(now - 120, 0.1, 0.2), (now - 60, 0.15, 0.3)],
        lost=1,
        accepted=10,
        intervals=[(now - 1800, now, True)],
        counters={"probe_events_posted": 10.0},
    )
    return Snapshot(now, HOSTILE, [ds], HOSTILE)


def test_every_value_is_escaped_and_the_style_is_the_one_the_policy_allows() -> None:
    html = render(hostile_snapshot(time.time())).decode()
    assert "<script" not in html and "<img" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img") >= 6
    style = re.search(r"<style>(.*?)</style>", html, flags=re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in CSP and CSP.startswith("default-src 'none';")
    assert re.search(r'<polyline class="p99"[^>]*points="[\d.]+,[\d.]+ [\d.]+,[\d.]+"', html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from another origin


def test_failures_outlive_pruning_and_stay_bounded_per_dataset(tmp_path: Path) -> None:
    now = time.time()
    with Store(tmp_path / "s.db") as store:
        app = store.app_id()
        sub = store.subscription_opened("a", now - 10_000)
        for i in range(FAILURES_KEPT + 20):
            seqno = store.record_send(app, "a", "1", now - 9000 + i)
            store.record_post(app, "a", seqno, True, None, now - 9000 + i)
        seqno = store.record_send(app, "b", "1", now - 8000)
        store.record_post(app, "b", seqno, False, "http_5xx", now - 8000)
        store.subscription_alive(sub, now)
        assert store.judge_overdue(now, {"a": 60, "b": 60}, 60)["a"][EventState.LOST] == FAILURES_KEPT + 20
        store.record_corrupted(app, "b", seqno, "fields added: " + "x" * 1000, now)
        store.prune(now)  # the retention: every event is older
        assert store.recent_events(10) == []
        kept = store.failures("a")
        assert len(kept) == FAILURES_KEPT and {f.kind for f in kept} == {FailureKind.LOST}
        assert kept[0].seqno == FAILURES_KEPT + 20 and kept[0].state is None  # newest first; its event pruned
        b = store.failures("b")
        assert [f.kind for f in b] == [FailureKind.CORRUPTED, FailureKind.POST_FAILED]
        assert len(b[0].detail or "") == FAILURE_DETAIL_MAX and b[1].detail == "http_5xx"


def test_the_reader_cuts_a_slow_query_off_and_never_writes(tmp_path: Path) -> None:
    Store(tmp_path / "s.db").close()
    with StoreReader(tmp_path / "s.db", query_seconds=0.2) as reader:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            reader._read("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT MAX(i) FROM n")
        assert time.monotonic() - started < 0.2 + 10  # the limit, with room for a loaded machine
        with pytest.raises(Exception, match="does not write"):
            reader.set_note("x", "y")
        assert reader.app_id() == "-"


def test_a_page_being_drawn_does_not_hold_up_another_request(tmp_path: Path) -> None:
    cfg = config.load(
        {
            "PROBE_CONFIG": str(ROOT / "probe.yaml"),
            "ORIGO_ENVIRONMENT": "local",
            "PROBE_DB_PATH": str(tmp_path / "s.db"),
        }
    )
    Store(tmp_path / "s.db").close()
    release = threading.Event()
    entered = threading.Event()

    def slow_counters() -> dict:
        entered.set()
        release.wait(30)
        return {}

    pages = Pages(cfg, slow_counters)
    first = threading.Thread(target=pages.page)
    first.start()
    assert entered.wait(10)
    assert pages.page()[0] == 503  # no page drawn yet, and none waited for
    release.set()
    first.join(10)
    status, body = pages.page()
    assert status == 200 and b"probe-dataset" in body


@pytest.fixture
def server_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A metrics program's settings; its metrics directory is this process's too."""
    settings = metrics_env(tmp_path)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", settings["PROMETHEUS_MULTIPROC_DIR"])
    return settings


def test_the_server_gives_the_page_to_a_browser_and_metrics_to_prometheus(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    port = int(server_env["METRICS_PORT"])
    with Store(tmp_path / "probe.sqlite3") as store:
        srv = metrics_server.make_server(config.load(server_env), store, limit=8)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{port}"
            page = requests.get(f"{base}/", headers={"Accept": CHROMIUM_ACCEPT}, timeout=10)
            assert page.headers["Content-Type"] == "text/html; charset=utf-8"
            assert page.headers["Content-Security-Policy"] == CSP and "probe-dataset" in page.text
            assert "blind" in page.text  # nobody is subscribed
            for accept in (PROMETHEUS_ACCEPT, "*/*", None):
                got = requests.get(f"{base}/", headers={"Accept": accept} if accept else {}, timeout=10)
                assert got.headers["Content-Type"].startswith("text/plain"), accept
            assert requests.get(f"{base}/status", timeout=10).headers["Content-Type"].startswith("text/html")
        finally:
            srv.shutdown()
            srv.server_close()


def test_probe_status_and_the_page_give_the_same_verdict(tmp_path: Path) -> None:
    db = tmp_path / "probe.sqlite3"
    env = {"PROBE_CONFIG": str(ROOT / "probe.yaml"), "ORIGO_ENVIRONMENT": "local", "PROBE_DB_PATH": str(db)}
    cfg = config.load(env)
    now = time.time()
    with Store(db) as store:  # subscribed and posting, one in three lost: degraded by loss
        app = store.app_id()
        sub = store.subscription_opened("probe-dataset", now - 600)
        for i in range(30):
            sent = now - 148 + i * 5
            seqno = store.record_send(app, "probe-dataset", "1", sent)
            store.record_post(app, "probe-dataset", seqno, True, None, sent)
            if i % 3:
                store.classify_arrival(app, "probe-dataset", seqno, sent + 0.2)
        store.subscription_alive(sub, now)
        store.judge_overdue(now, {"probe-dataset": 30}, 30)
    cli = subprocess.run(
        probe_cmd("status", "--json"), env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert cli.returncode == 0, cli.stderr
    verdict = json.loads(cli.stdout)["verdicts"]["probe-dataset"]
    with StoreReader(db) as reader:
        page = render(snapshot(cfg, reader, time.time())).decode()
    assert verdict["health"] == "degraded" and "of accepted events lost" in verdict["reason"]
    assert f'data-verdict="{verdict["health"]}"' in page and escape(verdict["reason"]) in page


def test_a_locked_store_costs_the_page_a_bounded_time_and_scrapes_nothing(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    port = int(server_env["METRICS_PORT"])
    db = tmp_path / "probe.sqlite3"
    store = Store(db)
    store.close()  # only /readyz uses it; an open connection would keep the locker out
    srv = metrics_server.make_server(config.load(server_env), store, limit=8)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    # Another process holds the store locked, readers included (exclusive locking mode).
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        base = f"http://127.0.0.1:{port}"
        page: list[requests.Response] = []
        asking = threading.Thread(target=lambda: page.append(requests.get(f"{base}/status", timeout=60)))
        asking.start()
        scrape = requests.get(f"{base}/metrics", timeout=10)  # the page is waiting on the lock meanwhile
        assert scrape.status_code == 200 and scrape.headers["Content-Type"].startswith("text/plain")
        # The page gives up after its query limit (1 s); the margin is for a loaded machine.
        asking.join(1 + 30)
        assert page and page[0].status_code == 200, "the page waited on the locked store"
        assert "database is locked" in page[0].text and 'class="problem"' in page[0].text
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        srv.shutdown()
        srv.server_close()


def test_the_page_names_an_events_state_in_the_words_of_probe_status() -> None:
    """An accepted event not yet arrived is `awaiting` on the page as in `probe status`, never the
    store's `posted`, which an operator reads as probe_events_posted_total (every accepted event)."""
    from probe_stack.commands.status import WORDS

    now = time.time()
    states = [EventState.POSTED, EventState.PENDING, EventState.RECEIVED]
    ds = DatasetStatus(
        name="probe-dataset",
        verdict=judge(facts()),
        recent=[EventRow("probe-dataset", n, now - n, s, PostState.OK, None, None, 0) for n, s in enumerate(states)],
        failures=[],
        latency=[],
        lost=0,
        accepted=0,
        intervals=[],
    )
    html = render(Snapshot(now, "abcdef01", [ds], None)).decode()
    shown = re.findall(r'<tr class="event"><td class="n">\d+</td><td>[^<]*</td><td[^>]*>([^<]*)</td>', html)
    assert shown == [WORDS.get(s.value, s.value) for s in states] == ["awaiting", "posting", "received"]
