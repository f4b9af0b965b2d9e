"""A redundant pair (docs/fleet.md): two supervised stacks of one group on one machine,
watching one dataset of one emulator, scraped by one real Prometheus evaluating the generated rules
(test-scaled as in test_alerting.py) and alerting through the shipped Alertmanager routing.

Each sees the other's events as a peer's, never a foreign instance's; the pipeline stopping pages
once for the group; one location's fault (the emulator refusing that instance's subscription) is a
ticket naming that instance, and no page.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from probe_deploy import alerting
from testkit.emulator import start_emulator
from testkit.http_stub import serve
from testkit.probe import probe_cmd
from testkit.process import ROOT, Proc, free_port, show_logs, start, stop_all, wait_until
from tests.e2e import harness
from tests.e2e.test_alerting import LOSS_TIMEOUT, SCALED, Monitored, Webhook, alertmanager_config, settle

pytestmark = pytest.mark.timeout(420)

DATASET = "probe-dataset"
GROUP = "pair"


@dataclass
class Pair:
    monitored: Monitored
    targets: dict[str, str]  # location -> Prometheus's instance label
    procs: dict[str, Proc]


@pytest.fixture
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    harness.require(harness.PROMETHEUS, harness.ALERTMANAGER)
    emulator = start_emulator(tmp_path, "--dataset", f"{DATASET}/1")
    emulator.faults(delay_ms=50, seed=7)
    rules = tmp_path / "rules.yml"
    rules.write_text(alerting.render(alerting.load_params(ROOT / "deploy/prometheus/alert-params.yaml", SCALED)))
    webhook = Webhook()
    procs: list[Proc] = []
    run_dirs: list[str] = []
    stacks: dict[str, Proc] = {}
    targets: dict[str, str] = {}
    envs: dict[str, dict[str, str]] = {}
    with serve(webhook.handle) as stub:
        webhook.url = stub.url
        try:
            alertmanager, am_port = harness.start_alertmanager(tmp_path, "", alertmanager_config(stub.url))
            procs.append(alertmanager)
            for location in ("zone-a", "zone-b"):
                home = tmp_path / location
                home.mkdir()
                run_dirs.append(tempfile.mkdtemp(prefix="pp-"))
                port = free_port()
                envs[location] = harness.stack_env(
                    emulator,
                    home,
                    run_dirs[-1],
                    port,
                    LOSS_TIMEOUT,
                    EVENT_INTERVAL_SECONDS=0.2,
                    PING_INTERVAL_SECONDS=1,
                    PONG_TIMEOUT_SECONDS=0.5,
                    MISSING_GRACE_SECONDS=1,
                    PROBE_GROUP=GROUP,
                    PROBE_LOCATION=location,
                    # The emulator tells the two subscriptions apart by this (its refuse_subscriber fault).
                    WEBSOCKET_URL=f"ws://127.0.0.1:{emulator.port}/event-data-subscription?subscriber={location}",
                )
                stacks[location] = start(probe_cmd("run"), home / "stack.log", env=envs[location])
                procs.append(stacks[location])
                targets[location] = f"127.0.0.1:{port}"
            ports = [int(t.rsplit(":", 1)[1]) for t in targets.values()]
            prometheus, prom_url = harness.start_prometheus(tmp_path, ports, rules, am_port)
            procs.append(prometheus)
            stack = harness.Stack(stacks["zone-a"], envs["zone-a"], f"http://{targets['zone-a']}", emulator, prom_url)
            yield Pair(Monitored(stack, webhook), targets, stacks)
        finally:
            stop_all(procs)
            emulator.proc.stop()
            for run_dir in run_dirs:
                shutil.rmtree(run_dir, ignore_errors=True)
            logs = ["zone-a/stack.log", "zone-b/stack.log", "alertmanager.log", "prometheus.log"]
            show_logs(harness.failed(request), tmp_path, logs, 4000)
            if harness.failed(request):
                print("---- notifications ----\n" + "\n".join(map(str, webhook.received)))


def test_a_redundant_pair_is_two_witnesses_not_two_foreigners(pair: Pair) -> None:
    monitored = pair.monitored
    stack, webhook = monitored.stack, monitored.webhook
    a, b = pair.targets["zone-a"], pair.targets["zone-b"]

    def peers(instance: str, location: str) -> float:
        expr = f'sum(probe_peer_events_total{{job="probe", instance="{instance}", peer_location="{location}"}})'
        return stack.value(expr) or 0

    # 1. Both watch, each counts the other's events as a peer's by its location, none as foreign.
    for instance in (a, b):
        wait_until(
            lambda instance=instance: (
                (stack.value(f'sum(probe_events_received_total{{job="probe", instance="{instance}"}})') or 0) >= 20
            ),
            90,
            f"Prometheus to see 20 events received by {instance}",
        )
    wait_until(lambda: peers(a, "zone-b") >= 20 and peers(b, "zone-a") >= 20, 30, "peer events at both")
    info = stack.query(f'probe_instance_info{{job="probe", group="{GROUP}"}}')
    assert {(s["metric"]["instance"], s["metric"]["location"]) for s in info} == {(a, "zone-a"), (b, "zone-b")}
    settle(monitored, 5)
    assert not stack.query('probe_wrong_appid_total{job="probe"} > 0')  # no foreign-instance series
    assert monitored.alert_state("ProbeForeignInstance") == "inactive"
    assert not webhook.since(0, "ProbeForeignInstance", "firing")

    # 2. A location-side fault: the emulator refuses zone-b's subscription. A ticket naming that
    # instance, no page: zone-a still sees the pipeline deliver.
    start = time.time()
    stack.emulator.faults(refuse_subscriber="zone-b")
    note = webhook.wait(start, "ProbeListenerNotSubscribed", "firing", 40)
    assert note.receiver == "tickets" and note.labels["instance"] == b
    settle(monitored, 5)
    assert webhook.pages(start) == set()
    assert {n.labels["instance"] for n in webhook.since(start, "ProbeListenerNotSubscribed", "firing")} == {b}
    stack.emulator.faults(refuse_subscriber="")
    webhook.wait(start, "ProbeListenerNotSubscribed", "resolved", 40)
    settle(monitored, 5)  # zone-b is a witness again: subscribed for a whole stale window
    assert webhook.pages(start) == set()

    # 3. The pipeline stops delivering: both witnesses see it, one page for the group, none per instance.
    start = time.time()
    stack.emulator.faults(paused=True)
    note = webhook.wait(start, "ProbeGroupEventsStale", "firing", 40)
    assert note.receiver == "pager"
    assert (note.labels["group"], note.labels["dataset"], note.labels.get("instance")) == (GROUP, DATASET, None)
    settle(monitored, 5)
    assert webhook.pages(start) == {("ProbeGroupEventsStale", DATASET)}
    stack.emulator.faults(paused=False)
