"""The shipped alerts and dashboards against the real thing: the supervised stack, the emulator,
Prometheus evaluating the generated rules (test-scaled through the same parameters), and
Alertmanager delivering to a webhook served here."""

from __future__ import annotations

import json
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import requests

from probe_stack import alerting, dashboard
from tests.e2e.harness import ALERTMANAGER, PROMETHEUS, Stack, require, stack_env, start_alertmanager, start_prometheus
from tests.helpers import ROOT, free_port, probe_cmd, start, start_emulator, wait_until
from tests.http_stub import Reply, Request, serve

pytestmark = pytest.mark.timeout(420)

LOSS_TIMEOUT = 2.0
# The shipped parameters, scaled to seconds; everything not named here keeps its default.
SCALED = {
    "selector": 'job="probe"',
    "probe_down_for": "10s",
    "not_subscribed_for": "3s",
    "stale_after_seconds": 3,
    "stale_for": "2s",
    "loss_window": "20s",
    "loss_ratio": 0.25,
    "loss_for": "2s",
    "blind_window": "20s",
    "blind_for": "1h",
    "slo_latency_seconds": 1,
    "burn_fast_long_window": "30s",
    "burn_fast_short_window": "10s",
    "burn_slow_long_window": "1m",
    "burn_slow_short_window": "20s",
}

# The original service's dashboard, query for query.
ORIGINAL_QUERIES = [
    "probe_events_posted_total",
    "probe_events_received_total",
    "probe_events_lost_total",
    *(
        f"round(increase(probe_events_{kind}_total[{window}]))"
        for kind in ("posted", "received", "lost")
        for window in ("1m", "3m", "10m")
    ),
    *(
        f"rate(probe_events_{kind}_total[{window}]) * 60"
        for kind in ("posted", "received", "lost")
        for window in ("1m", "3m", "10m", "1h")
    ),
    "probe_event_latency",
    "avg_over_time(probe_event_latency[10m])",
    "max_over_time(probe_event_latency[10m])",
    "quantile_over_time(0.90, probe_event_latency[10m])",
    "probe_events_missing_1m_share",
    "probe_events_missing_10m_share",
    "probe_events_missing_1h_share",
]


@dataclass
class Notification:
    at: float
    status: str  # firing / resolved
    alertname: str
    labels: dict
    annotations: dict


@dataclass
class Webhook:
    """What Alertmanager delivered to the receiver served by the test."""

    url: str = ""
    received: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Reply:
        doc = json.loads(request.body)
        with self.lock:
            for alert in doc["alerts"]:
                self.received.append(
                    Notification(
                        time.time(),
                        alert["status"],
                        alert["labels"]["alertname"],
                        alert["labels"],
                        alert["annotations"],
                    )
                )
        return Reply(200, b"ok")

    def since(self, start: float, alertname: str, status: str) -> list[Notification]:
        with self.lock:
            return [n for n in self.received if n.at >= start and n.alertname == alertname and n.status == status]

    def wait(self, start: float, alertname: str, status: str, timeout: float) -> Notification:
        found = wait_until(
            lambda: self.since(start, alertname, status), timeout, f"{alertname} {status} at the webhook"
        )
        return found[0]


@dataclass
class Monitored:
    stack: Stack
    webhook: Webhook

    def alert_state(self, alertname: str) -> str:
        """The rule's state in Prometheus: inactive, pending or firing."""
        answer = requests.get(f"{self.stack.prometheus_url}/api/v1/rules", timeout=10).json()
        for group in answer["data"]["groups"]:
            for rule in group["rules"]:
                if rule.get("name") == alertname:
                    return rule["state"]
        raise AssertionError(f"no rule {alertname}")

    def evaluated_after(self, moment: float) -> bool:
        answer = requests.get(f"{self.stack.prometheus_url}/api/v1/rules", timeout=10).json()
        stamps = [group["lastEvaluation"] for group in answer["data"]["groups"]]
        return all(_rfc3339(stamp) > moment for stamp in stamps)


def _rfc3339(stamp: str) -> float:
    """Prometheus's timestamps (nanoseconds, Z) as Unix time."""
    match = re.match(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp)
    assert match, stamp
    head, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]:0<6}{zone}").timestamp()


@pytest.fixture
def monitored(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Monitored]:
    require(PROMETHEUS, ALERTMANAGER)
    emulator = start_emulator(tmp_path)
    emulator.faults(delay_ms=50, seed=7)
    run_dir = tempfile.mkdtemp(prefix="pa-")
    metrics_port = free_port()
    env = stack_env(
        emulator,
        tmp_path,
        run_dir,
        metrics_port,
        LOSS_TIMEOUT,
        EVENT_INTERVAL_SECONDS=0.2,
        PING_INTERVAL_SECONDS=1,
        PONG_TIMEOUT_SECONDS=0.5,
        MISSING_GRACE_SECONDS=1,
    )
    rules = tmp_path / "rules.yml"
    rules.write_text(alerting.render(alerting.load_params(ROOT / "deploy/prometheus/alert-params.yaml", SCALED)))
    webhook = Webhook()
    procs = []
    with serve(webhook.handle) as stub:
        webhook.url = stub.url
        try:
            alertmanager, am_port = start_alertmanager(tmp_path, f"{stub.url}/alerts")
            procs.append(alertmanager)
            stack_proc = start(probe_cmd("run"), tmp_path / "stack.log", env=env)
            procs.append(stack_proc)
            prometheus, prom_url = start_prometheus(tmp_path, metrics_port, rules, am_port)
            procs.append(prometheus)
            stack = Stack(stack_proc, env, f"http://127.0.0.1:{metrics_port}", emulator, prom_url)
            yield Monitored(stack, webhook)
        finally:
            for proc in reversed(procs):
                proc.stop(signal.SIGTERM, timeout=60)
            emulator.proc.stop()
            shutil.rmtree(run_dir, ignore_errors=True)
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                for log in ("stack.log", "alertmanager.log", "prometheus.log"):
                    print(f"---- {log} ----\n" + (tmp_path / log).read_text(errors="replace")[-5000:])
                print("---- notifications ----\n" + "\n".join(map(str, webhook.received)))


def dashboard_queries() -> list[str]:
    """Every panel's PromQL, with Grafana's variables as Grafana would fill them in."""
    doc = json.loads((ROOT / "deploy/grafana/dashboards/dataplatform-probe.json").read_text())
    exprs = [t["expr"] for p in dashboard.all_panels(doc) for t in p.get("targets", [])]
    return [e.replace("$__rate_interval", "1m").replace("$dataset", ".*") for e in exprs]


def test_alerts_reach_alertmanager_for_outages_loss_and_blindness_and_every_panel_has_data(
    monitored: Monitored,
) -> None:
    stack, webhook = monitored.stack, monitored.webhook
    received = lambda: stack.value('sum(probe_events_received_total{job="probe"})') or 0  # noqa: E731
    wait_until(lambda: received() >= 20, 60, "Prometheus to see 20 received events")
    wait_until(lambda: stack.value('sum(probe_events_missing_1m_share{job="probe"})') is not None, 20, "shares")

    # Every panel of the shipped dashboard and every query of the original's returns data.
    queries = dashboard_queries() + ORIGINAL_QUERIES
    empty = lambda: [q for q in queries if not stack.query(q)]  # noqa: E731
    try:
        wait_until(lambda: not empty(), 30, "data for every query")
    except AssertionError:
        raise AssertionError("queries without data:\n" + "\n".join(empty())) from None
    assert stack.value('max(probe_events_missing_1h_share{job="probe"})') <= 0.2  # a healthy pipeline

    # 1. The listener is stopped for long: not subscribed fires; loss does not, as the probe is blind.
    start = time.time()
    assert "listener: stopped" in stack.ctl("stop", "listener")
    note = webhook.wait(start, "ProbeListenerNotSubscribed", "firing", 40)
    assert note.labels["severity"] == "warning" and note.annotations["runbook"].endswith("#probelistenernotsubscribed")
    assert "listener: started" in stack.ctl("start", "listener")
    unobserved = lambda: stack.value('sum(probe_events_unobserved_total{job="probe"})') or 0  # noqa: E731
    wait_until(lambda: unobserved() > 0, 40, "the blind window's events judged unobserved and scraped")
    seen = time.time()
    wait_until(lambda: monitored.evaluated_after(seen + 3), 20, "three more rule evaluations")
    assert monitored.alert_state("ProbeEventLoss") == "inactive"
    assert not webhook.since(start, "ProbeEventLoss", "firing")
    webhook.wait(start, "ProbeListenerNotSubscribed", "resolved", 40)

    # 2. An outage (the pipeline holds every event): staleness fires, and resolves when it ends.
    start = time.time()
    stack.emulator.faults(paused=True)
    note = webhook.wait(start, "ProbeEventsStale", "firing", 40)
    assert note.labels["severity"] == "critical" and note.labels["dataset"] == "probe-dataset"
    assert note.annotations["summary"].startswith("No event of the probe has arrived on probe-dataset")
    stack.emulator.faults(paused=False)
    webhook.wait(start, "ProbeEventsStale", "resolved", 40)

    # 3. The pipeline drops most events: the loss alert fires.
    wait_until(lambda: monitored.alert_state("ProbeEventLoss") == "inactive", 60, "the outage's losses to age out")
    start = time.time()
    stack.emulator.faults(drop_rate=0.7)
    note = webhook.wait(start, "ProbeEventLoss", "firing", 60)
    assert note.labels["severity"] == "critical"
    assert re.match(r"\d+(\.\d+)?% of the probe's events on probe-dataset were lost", note.annotations["summary"])
    stack.emulator.faults(drop_rate=0.0)
