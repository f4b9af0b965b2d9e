"""The real monitoring stack around a running probe: Prometheus (and its rules), Alertmanager, the stack."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from testkit import probe
from testkit.emulator import EmulatorClient
from testkit.process import ROOT, Proc, free_port, show_logs, start, wait_until

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def require(*tools: str | None) -> None:
    if not all(tools):
        pytest.fail(
            "Prometheus and Alertmanager are required (Debian: apt-get install prometheus prometheus-alertmanager); "
            "`make test` installs them"
        )


@dataclass
class Stack:
    proc: Proc
    env: dict[str, str]
    metrics_url: str
    emulator: EmulatorClient
    prometheus_url: str

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            probe.probe_cmd("ctl", *args), env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        return result.stdout + result.stderr

    def query(self, expr: str) -> list[dict]:
        answer = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


def start_prometheus(
    tmp: Path, target_port: int | list[int], rules: Path | None = None, alertmanager_port: int | None = None
) -> tuple[Proc, str]:
    """A real Prometheus scraping the probe (or each of several) every second as job "probe", evaluating
    rules every second."""
    port = free_port()
    config = tmp / "prometheus.yml"
    text = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
    if rules is not None:
        text += f"rule_files:\n  - {rules}\n"
    if alertmanager_port is not None:
        text += (
            "alerting:\n  alertmanagers:\n    - static_configs:\n"
            f"        - targets: ['127.0.0.1:{alertmanager_port}']\n"
        )
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in ([target_port] if isinstance(target_port, int) else target_port))
    text += f"scrape_configs:\n  - job_name: probe\n    static_configs:\n      - targets: [{targets}]\n"
    config.write_text(text)
    require(PROMETHEUS)
    proc = start(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
        tmp / "prometheus.log",
    )
    return wait_ready(proc, port, "prometheus"), f"http://127.0.0.1:{port}"


def wait_ready(proc: Proc, port: int, what: str) -> Proc:
    """Wait for a Prometheus-style /-/ready on the port; show the log when it never comes."""
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).ok, 30, f"{what} ready")
    except AssertionError:
        proc.stop()
        raise AssertionError(f"{what} did not start:\n" + proc.output()[-3000:]) from None
    return proc


def start_alertmanager(tmp: Path, webhook_url: str, text: str | None = None) -> tuple[Proc, int]:
    """A real Alertmanager that sends every alert, firing and resolved, to `webhook_url` within about a second;
    or one running the configuration `text` (the shipped routing, receivers and timings made the test's)."""
    require(ALERTMANAGER)
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(
        text
        or "route:\n  receiver: test\n  group_by: [alertname, dataset]\n"
        "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n  - name: test\n    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n"
    )
    proc = start(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: nothing but loopback
        ],
        tmp / "alertmanager.log",
    )
    return wait_ready(proc, port, "alertmanager"), port


def stack_env(
    emulator: EmulatorClient, tmp: Path, run_dir: str, metrics_port: int, loss_timeout: float, **extra: object
) -> dict[str, str]:
    """The kit's stack environment, quick to judge: events every 0.1 s, latency buckets around the emulator's delay."""
    buckets = ",".join(str(round(0.18 + i * 0.005, 3)) for i in range(12)) + ",0.3,0.5,1,2,5"
    settings: dict[str, object] = {
        "EVENT_INTERVAL_SECONDS": 0.1,
        "LOSS_TIMEOUT_SECONDS": loss_timeout,
        "POST_TIMEOUT_SECONDS": 1,
        "LATENCY_BUCKETS": buckets,
        "RECONNECT_MAX_SECONDS": 1,
        **extra,
    }
    return probe.stack_env(emulator, tmp, run_dir, metrics_port, **settings)


@contextmanager
def probe_run(
    emulator: EmulatorClient, tmp: Path, request: pytest.FixtureRequest, loss_timeout: float, **extra: object
) -> Iterator[Stack]:
    """`probe run` on the emulator (its Prometheus URL left for the caller to fill in); on leaving, stopped
    as Ctrl-C would, its log shown if the test failed, and required to have stopped cleanly."""
    run_dir = tempfile.mkdtemp(prefix="pr-")
    port = free_port()
    env = stack_env(emulator, tmp, run_dir, port, loss_timeout, **extra)
    proc = start(probe.probe_cmd("run"), tmp / "stack.log", env=env)
    try:
        yield Stack(proc, env, f"http://127.0.0.1:{port}", emulator, "")
    finally:
        code = proc.stop(signal.SIGTERM, timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)
        show_logs(failed(request), tmp, ["stack.log"], 8000)
        assert code == 0, f"the stack did not stop cleanly ({code})"


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test's call failed, asked in teardown (conftest.py records the report)."""
    return getattr(getattr(request.node, "rep_call", None), "failed", False)
