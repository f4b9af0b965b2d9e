"""A sharded fleet (docs/fleet.md): three supervised stacks, shards 0/3, 1/3 and 2/3 of
one list of nine datasets on one emulator, scraped by one real Prometheus evaluating the generated
rules. Each watches its third and together they watch all nine; stopping one fires
ProbeDatasetUnwatched for each of its datasets, naming it, within the alert's `for`, and for no other.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from probe_deploy import alerting
from shared.shard import shard_of
from testkit.emulator import start_emulator
from testkit.probe import probe_cmd
from testkit.process import ROOT, Proc, free_port, show_logs, start, stop_all, wait_until
from tests.e2e.harness import PROMETHEUS, failed, require, stack_env, start_prometheus
from tests.e2e.test_alerting import SCALED

pytestmark = pytest.mark.timeout(300)

DATASETS = [f"ds-{i}" for i in range(1, 10)]
SHARDS = 3
UNWATCHED_FOR = 3  # seconds, scaled from the shipped 5m


@dataclass
class Fleet:
    prometheus_url: str
    stacks: list[Proc]
    targets: list[str]  # Prometheus's instance label of each shard

    def query(self, expr: str) -> list[dict]:
        answer = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def firing(self, alertname: str) -> list[dict]:
        alerts = requests.get(f"{self.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


@pytest.fixture
def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    require(PROMETHEUS)
    emulator = start_emulator(tmp_path, *(arg for name in DATASETS for arg in ("--dataset", f"{name}/1")))
    config = tmp_path / "probe.yaml"
    config.write_text("environment: local\ndatasets:\n" + "".join(f"  - id: {name}\n" for name in DATASETS))
    rules = tmp_path / "rules.yml"
    params = {**SCALED, "unwatched_for": f"{UNWATCHED_FOR}s"}
    rules.write_text(alerting.render(alerting.load_params(ROOT / "deploy/prometheus/alert-params.yaml", params)))
    procs: list[Proc] = []
    stacks: list[Proc] = []
    run_dirs: list[str] = []
    ports: list[int] = []
    try:
        for index in range(SHARDS):
            home = tmp_path / f"shard-{index}"
            home.mkdir()
            run_dirs.append(tempfile.mkdtemp(prefix="pf-"))
            ports.append(free_port())
            env = stack_env(
                emulator,
                home,
                run_dirs[-1],
                ports[-1],
                5.0,
                PROBE_CONFIG=config,
                PROBE_SHARD=f"{index}/{SHARDS}",
                EVENT_INTERVAL_SECONDS=1,
            )
            stacks.append(start(probe_cmd("run"), home / "stack.log", env=env))
            procs.append(stacks[-1])
        prometheus, url = start_prometheus(tmp_path, ports, rules)
        procs.append(prometheus)
        yield Fleet(url, stacks, [f"127.0.0.1:{p}" for p in ports])
    finally:
        stop_all(procs)
        emulator.proc.stop()
        for run_dir in run_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)
        logs = [f"shard-{i}/stack.log" for i in range(SHARDS)] + ["prometheus.log"]
        show_logs(failed(request), tmp_path, logs, 3000)


def test_three_shards_watch_all_nine_and_a_stopped_one_leaves_its_datasets_named_unwatched(fleet: Fleet) -> None:
    def watched_by() -> dict[str, set[str]]:
        """dataset -> the instances that say they watch it."""
        out: dict[str, set[str]] = {}
        for sample in fleet.query('probe_dataset_watched{job="probe"} == 1'):
            out.setdefault(sample["metric"]["dataset"], set()).add(sample["metric"]["instance"])
        return out

    wait_until(lambda: sorted(watched_by()) == DATASETS, 90, "every dataset watched by a scraped instance")
    owners = watched_by()
    assert all(len(instances) == 1 for instances in owners.values())  # each by one instance only
    for index, target in enumerate(fleet.targets):
        mine = sorted(d for d, instances in owners.items() if target in instances)
        assert mine == sorted(d for d in DATASETS if shard_of(d, SHARDS) == index)
        assert len(mine) == 3
    # They really watch them: each instance subscribes to its own datasets and no other.
    wait_until(
        lambda: len(fleet.query('probe_websocket_connected{job="probe"} == 1')) == len(DATASETS), 60, "9 subscriptions"
    )
    for sample in fleet.query('probe_websocket_connected{job="probe"}'):
        assert sample["metric"]["instance"] in owners[sample["metric"]["dataset"]]
    assert fleet.firing("ProbeDatasetUnwatched") == []

    stopped = 2
    orphans = sorted(d for d in DATASETS if shard_of(d, SHARDS) == stopped)
    stopped_at = time.time()
    fleet.stacks[stopped].stop(signal.SIGTERM, timeout=60)

    def named() -> list[str]:
        return sorted(a["labels"]["dataset"] for a in fleet.firing("ProbeDatasetUnwatched"))

    # Within the alert's `for`, plus the scrape that sees the target gone and an evaluation or two.
    wait_until(lambda: named() == orphans, UNWATCHED_FOR + 30, f"ProbeDatasetUnwatched for {orphans}")
    assert time.time() - stopped_at >= UNWATCHED_FOR  # not before its `for`
    for alert in fleet.firing("ProbeDatasetUnwatched"):
        dataset = alert["labels"]["dataset"]
        assert alert["annotations"]["summary"] == f"No live probe instance watches {dataset} (shard {stopped}/{SHARDS})"
