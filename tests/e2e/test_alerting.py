"""The shipped alerts and dashboards against the real thing: the supervised stack watching two
datasets on the emulator, Prometheus evaluating the generated rules (test-scaled through the same
parameters), and Alertmanager running the shipped routing and inhibitions (deploy/alertmanager/
alertmanager.yml, only its receivers' URLs and timings made the test's), delivering to a webhook
served here: pages to /pager, tickets to /tickets.

One incident, one page: an outage of one dataset pages once for it (ProbeEventsStale) and never
for the other, drops page as ProbeEventLoss and nothing else, a stopped probe pages once
(ProbeTargetDown). Everything is scaled to seconds: the outage lasts 30 s instead of the 3 minutes
deploy/prometheus/tests/probe-incidents.test.yml plays with the shipped parameters.
"""

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
import yaml

from probe_deploy import alerting, dashboard
from testkit.emulator import serve_emulator
from testkit.http_stub import Reply, Request, serve
from testkit.probe import probe_cmd
from testkit.process import ROOT, free_port, show_logs, start, stop_all, wait_until
from tests.e2e.harness import (
    ALERTMANAGER,
    PROMETHEUS,
    Stack,
    failed,
    require,
    stack_env,
    start_alertmanager,
    start_prometheus,
)

pytestmark = pytest.mark.timeout(600)

# Above stale_after_seconds, as the shipped defaults are (300 s and 120 s): an outage's events are
# judged lost only once its staleness already keeps the loss alert quiet.
LOSS_TIMEOUT = 5.0
DATASETS = ("probe-dataset", "probe-orders")
PAUSE_SECONDS = 30
# The shipped parameters, scaled to seconds; everything not named here keeps its default.
SCALED = {
    "selector": 'job="probe"',
    "probe_down_for": "10s",
    "not_subscribed_for": "3s",
    "stale_after_seconds": 3,
    "stale_for": "2s",
    "loss_window": "30s",
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
    receiver: str  # pager / tickets: the path Alertmanager posted to
    status: str  # firing / resolved
    alertname: str
    labels: dict
    annotations: dict
    starts_at: float


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
                        request.path.strip("/"),
                        alert["status"],
                        alert["labels"]["alertname"],
                        alert["labels"],
                        alert["annotations"],
                        _rfc3339(alert["startsAt"]),
                    )
                )
        return Reply(200, b"ok")

    def pages(self, since: float) -> set[tuple[str, str]]:
        """(alertname, dataset) of every alert that started at or after `since` and reached the pager."""
        with self.lock:
            return {
                (n.alertname, n.labels.get("dataset", ""))
                for n in self.received
                if n.receiver == "pager" and n.status == "firing" and n.starts_at >= since - 1
            }

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


def alertmanager_config(webhook: str) -> str:
    """The shipped routing and inhibitions, with the test's receivers and timings."""
    doc = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    for route in [doc["route"], *doc["route"].get("routes", [])]:
        for key in ("group_wait", "group_interval"):
            if key in route or route is doc["route"]:
                route[key] = "1s"
    for receiver in doc["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook}/{receiver['name']}"
    return yaml.safe_dump(doc)


@pytest.fixture
def monitored(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Monitored]:
    require(PROMETHEUS, ALERTMANAGER)
    emulator = serve_emulator(*(arg for name in DATASETS for arg in ("--dataset", f"{name}/1")))
    emulator.faults(delay_ms=50, seed=7)
    run_dir = tempfile.mkdtemp(prefix="pa-")
    metrics_port = free_port()
    config = tmp_path / "probe.yaml"
    config.write_text("environment: local\ndatasets:\n" + "".join(f"  - id: {name}\n" for name in DATASETS))
    env = stack_env(
        emulator,
        tmp_path,
        run_dir,
        metrics_port,
        LOSS_TIMEOUT,
        PROBE_CONFIG=config,
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
            alertmanager, am_port = start_alertmanager(tmp_path, "", alertmanager_config(stub.url))
            procs.append(alertmanager)
            stack_proc = start(probe_cmd("run"), tmp_path / "stack.log", env=env)
            procs.append(stack_proc)
            prometheus, prom_url = start_prometheus(tmp_path, metrics_port, rules, am_port)
            procs.append(prometheus)
            stack = Stack(stack_proc, env, f"http://127.0.0.1:{metrics_port}", emulator, prom_url)
            yield Monitored(stack, webhook)
        finally:
            stop_all(procs)
            emulator.proc.stop()
            shutil.rmtree(run_dir, ignore_errors=True)
            show_logs(failed(request), tmp_path, ["stack.log", "alertmanager.log", "prometheus.log"], 5000)
            if failed(request):
                print("---- notifications ----\n" + "\n".join(map(str, webhook.received)))


def dashboard_queries() -> list[str]:
    """Every panel's PromQL, with Grafana's variables as Grafana would fill them in."""
    doc = json.loads((ROOT / "deploy/grafana/dashboards/dataplatform-probe.json").read_text())
    exprs = [t["expr"] for p in dashboard.all_panels(doc) for t in p.get("targets", [])]
    return [fill_variables(e) for e in exprs]


def fill_variables(expr: str) -> str:
    """The test's Prometheus calls its scrape job "probe"; every instance and dataset chosen."""
    for name, value in (("$__rate_interval", "1m"), ("$job", "probe"), ("$instance", ".*"), ("$dataset", ".*")):
        expr = expr.replace(name, value)
    return expr


def annotation_queries() -> list[str]:
    doc = json.loads((ROOT / "deploy/grafana/dashboards/dataplatform-probe.json").read_text())
    return [fill_variables(a["expr"]) for a in doc["annotations"]["list"] if "expr" in a]


def settle(monitored: Monitored, seconds: float) -> None:
    """Let `seconds` of rule evaluations pass (and Alertmanager deliver what they fired)."""
    moment = time.time() + seconds
    wait_until(lambda: monitored.evaluated_after(moment), seconds + 30, f"{seconds:g}s of rule evaluations")
    time.sleep(2)  # group_wait and group_interval are 1 s: what fired by now has been delivered


def test_one_incident_pages_once_and_every_panel_has_data(monitored: Monitored) -> None:
    stack, webhook = monitored.stack, monitored.webhook
    received = lambda: stack.value('sum(probe_events_received_total{job="probe"})') or 0  # noqa: E731
    wait_until(lambda: received() >= 40, 60, "Prometheus to see 40 received events")
    wait_until(lambda: stack.value('sum(probe_events_missing_1m_share{job="probe"})') is not None, 20, "shares")

    # Every panel of the shipped dashboard and every query of the original's returns data.
    queries = dashboard_queries() + ORIGINAL_QUERIES
    empty = lambda: [q for q in queries if not stack.query(q)]  # noqa: E731
    try:
        wait_until(lambda: not empty(), 30, "data for every query")
    except AssertionError:
        raise AssertionError("queries without data:\n" + "\n".join(empty())) from None
    assert stack.value('max(probe_events_missing_1h_share{job="probe"})') <= 0.2  # a healthy pipeline
    for expr in annotation_queries():  # valid PromQL (stack.query asserts success); data only on events
        stack.query(expr)

    # 1. The listener is stopped: a ticket that it is not subscribed; no page, and no loss, as the probe is blind.
    start = time.time()
    assert "listener: stopped" in stack.ctl("stop", "listener")
    note = webhook.wait(start, "ProbeListenerNotSubscribed", "firing", 40)
    assert note.receiver == "tickets" and note.labels["severity"] == "warning"
    assert note.annotations["runbook"] == "docs/runbook.md#probelistenernotsubscribed"
    assert "runbook_url" not in note.annotations  # no link to nowhere until an operator gives one
    assert "listener: started" in stack.ctl("start", "listener")
    unobserved = lambda: stack.value('sum(probe_events_unobserved_total{job="probe"})') or 0  # noqa: E731
    wait_until(lambda: unobserved() > 0, 40, "the blind window's events judged unobserved and scraped")
    webhook.wait(start, "ProbeListenerNotSubscribed", "resolved", 40)
    settle(monitored, 5)
    assert monitored.alert_state("ProbeEventLoss") == "inactive"
    assert webhook.pages(start) == set()

    # 2. An outage of one dataset (its pipeline holds every event), then its end: one page, for it
    # alone. The loss judged meanwhile, the burn and the held events' latency page nothing, then or after.
    start = time.time()
    stack.emulator.faults("probe-orders", paused=True)
    note = webhook.wait(start, "ProbeEventsStale", "firing", 40)
    assert note.receiver == "pager" and note.labels["dataset"] == "probe-orders"
    assert note.annotations["summary"].startswith("No event of the probe has arrived on probe-orders")
    settle(monitored, max(0, start + PAUSE_SECONDS - time.time()))
    stack.emulator.faults("probe-orders", paused=False)
    webhook.wait(start, "ProbeEventsStale", "resolved", 40)
    settle(monitored, 35)  # the outage leaves the loss and burn windows (30 s)
    assert webhook.pages(start) == {("ProbeEventsStale", "probe-orders")}

    # 3. The pipeline drops 5 % of the events: loss pages for each dataset, and nothing else does.
    start = time.time()
    stack.emulator.faults(drop_rate=0.05)
    stack.emulator.faults("probe-orders", drop_rate=0.05)  # its own faults replaced the shared ones
    for name in DATASETS:
        wait_until(lambda name=name: ("ProbeEventLoss", name) in webhook.pages(start), 90, f"a loss page for {name}")
    note = next(n for n in webhook.since(start, "ProbeEventLoss", "firing"))
    assert re.match(r"\d+(\.\d+)?% of the probe's events on probe-\w+ were lost", note.annotations["summary"])
    settle(monitored, 5)
    assert webhook.pages(start) == {("ProbeEventLoss", name) for name in DATASETS}

    # 4. The probe stops: one page, that it is down; none of the pipeline alerts fire on the windows it left behind.
    start = time.time()
    stack.proc.stop(signal.SIGTERM, timeout=60)
    wait_until(lambda: ("ProbeTargetDown", "") in webhook.pages(start), 60, "a page that the probe is down")
    settle(monitored, 35)  # every window of a paging rule (30 s) has gone stale
    assert webhook.pages(start) == {("ProbeTargetDown", "")}
