"""The whole supervised stack against the emulator, scraped by a real Prometheus server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from shared.contract import LOCAL_CLIENT_SECRET, LOCAL_WEBHOOK_TOKEN
from shared.exits import ExitStatus
from testkit.emulator import serve_emulator
from testkit.probe import probe_cmd, read_events, store_app_id, store_in_flight
from testkit.process import ROOT, free_port, start, wait_until
from testkit.truth import implied_state
from tests.e2e.harness import PROMETHEUS, PROMTOOL, Stack, probe_run, require, stack_env, start_prometheus

pytestmark = pytest.mark.timeout(300)

LOSS_TIMEOUT = 3.0
DELAY = 0.2


def documented_metrics() -> list[str]:
    section = (ROOT / "docs" / "metrics.md").read_text().split("\n## ", 1)[0]
    return sorted(set(re.findall(r"^\| `(probe_[a-z_]+)`", section, flags=re.M)))


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    require(PROMETHEUS, PROMTOOL)
    emulator = serve_emulator()
    emulator.faults(delay_ms=DELAY * 1000, drop_rate=0.05, seed=42)
    try:
        with probe_run(emulator, tmp_path, request, LOSS_TIMEOUT) as stack:
            # Prometheus starts scraping once the metrics program serves: `up` then means the program stayed up.
            wait_until(lambda: requests.get(f"{stack.metrics_url}/healthz", timeout=5).ok, 60, "the metrics port")
            prometheus, stack.prometheus_url = start_prometheus(tmp_path, int(stack.env["METRICS_PORT"]))
            try:
                yield stack
            finally:
                prometheus.stop()
    finally:
        emulator.proc.stop()


def final_states_match_the_truth(stack: Stack, killed_at: float, resubscribed: float) -> None:
    """Each event's state against what the emulator's truth implies, given when the listener was away.

    The listener was certainly blind from the kill to the resubscription; its last
    proof of life before the kill may be up to a couple of seconds older, so events
    whose window only touches that margin may go either way.
    """
    app_id = store_app_id(stack.env)
    rows = {e.seqno: (e.state, e.post_state, e.sent_at, e.receive_count) for e in read_events(stack.env)}
    truth = {e["seqno"]: e for e in stack.emulator.truth()["events"] if e["app_id"] == app_id}
    strict = 0
    for seqno, (state, post_state, sent_at, count) in rows.items():
        event = truth.get(seqno)
        window_touches = lambda start, end, s=sent_at: start < s + LOSS_TIMEOUT and s < end  # noqa: E731
        blind = window_touches(killed_at, resubscribed)
        unsure = not blind and window_touches(killed_at - 2.0, resubscribed)
        if event is None:
            assert state in ("post_failed", "unobserved"), (seqno, state, post_state)
        elif event["fate"] == "dropped":
            assert state in (("unobserved",) if blind else ("lost", "unobserved") if unsure else ("lost",)), seqno
        elif blind or unsure:
            assert state in ("received", "unobserved"), (seqno, state)
        else:
            assert (state, count) == implied_state(event), (seqno, state, count)
        strict += not (blind or unsure)
    assert strict > 40  # the comparison is not vacuous


def test_stack_under_prometheus_survives_restarts_and_tells_the_truth(stack: Stack) -> None:
    samples_up = lambda: stack.value('probe_events_received_total{job="probe"}')  # noqa: E731
    wait_until(lambda: (samples_up() or 0) >= 20, 60, "Prometheus to see 20 received events")
    first = samples_up()
    wait_until(lambda: samples_up() > first, 20, "probe_events_received_total to grow")
    assert requests.get(f"{stack.metrics_url}/healthz", timeout=5).status_code == 200
    wait_until(lambda: requests.get(f"{stack.metrics_url}/readyz", timeout=5).status_code == 200, 20, "ready")
    assert "probe_events_posted_total" in requests.get(f"{stack.metrics_url}/", timeout=5).text  # the original's path

    median = wait_until(
        lambda: stack.value("histogram_quantile(0.5, sum by (le) (rate(probe_event_latency_seconds_bucket[30s])))"),
        30,
        "a latency median",
    )
    assert DELAY <= median <= DELAY * 1.5, median  # the delay is a floor; a busy machine adds, not half as much

    exposed = requests.get(f"{stack.metrics_url}/metrics", timeout=5).text
    for name in documented_metrics():
        assert re.search(rf"^{name}(_total|_bucket)?[{{ ]", exposed, flags=re.M), f"{name} is not exposed"
        assert stack.value(f'count({{__name__=~"{name}(_total|_bucket)?"}})'), f"{name} not in Prometheus"

    promtool = subprocess.run([PROMTOOL, "check", "metrics"], input=exposed, capture_output=True, text=True)
    assert promtool.returncode == 0 and not (promtool.stdout + promtool.stderr).strip(), promtool.stdout

    # A graceful restart of the sender, then a crash of the listener, while traffic flows.
    assert "sender: stopped" in stack.ctl("restart", "sender")
    pid = int(stack.ctl("pid", "listener").strip())
    received_before_kill = samples_up()
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    wait_until(lambda: stack.ctl("pid", "listener").strip() not in ("", "0", str(pid)), 30, "a new listener")
    wait_until(lambda: samples_up() > received_before_kill + 60, 60, "events flowing after the kill")
    resubscribed = min(
        s["connected_at"] for s in stack.emulator.truth()["subscribers"] if s["connected_at"] > killed_at
    )
    wait_until(lambda: stack.value('probe_websocket_connected{job="probe"}') == 1, 20, "one live connection")

    # Let every event reach a final state, then hold everything against the truth.
    assert "sender: stopped" in stack.ctl("stop", "sender")
    wait_until(lambda: store_in_flight(stack.env) == 0, LOSS_TIMEOUT + 15, "every event judged")
    final_states_match_the_truth(stack, killed_at, resubscribed)

    exposed = requests.get(f"{stack.metrics_url}/metrics", timeout=5).text
    lost = float(re.search(r"^probe_events_lost_total\{[^}]*\} (\S+)", exposed, flags=re.M).group(1))
    assert lost >= 1  # drop_rate 0.05 was noticed
    wait_until(lambda: stack.value('sum(probe_events_lost_total{job="probe"})') == lost, 10, "the final scrape")
    counters = {f["metric"]["__name__"] for f in stack.query('{__name__=~"probe_.*_total", job="probe"}')}
    assert len(counters) >= 15
    for name in sorted(counters):  # no counter ever went down, through every restart
        assert stack.value(f'sum(resets({name}{{job="probe"}}[10m]))') == 0, name
    assert stack.value('min_over_time(up{job="probe"}[10m])') == 1
    log = stack.proc.output()
    assert "subscribed to" in log and "webhook_token" not in log
    assert LOCAL_CLIENT_SECRET not in log and LOCAL_WEBHOOK_TOKEN not in log and "Bearer ey" not in log


def test_bad_configuration_exits_at_once_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PROBE_CONFIG": str(ROOT / "probe.yaml"), "EVENT_INTERVAL_SECONDS": "abc"}
    started = time.monotonic()
    result = subprocess.run(probe_cmd("run"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == ExitStatus.CONFIG
    assert time.monotonic() - started < 5
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "EVENT_INTERVAL_SECONDS" in lines[0], result.stderr
    assert not (tmp_path / "var").exists()  # nothing was started or created


def test_a_corrupt_store_stops_the_stack_before_it_starts(tmp_path: Path) -> None:
    bad_store = tmp_path / "not-a-db.sqlite3"
    bad_store.write_bytes(b"garbage" * 1000)
    env = {
        **os.environ,
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "PROBE_DB_PATH": str(bad_store),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "METRICS_PORT": str(free_port()),  # the default, 8000, may be a running demo's
    }
    result = subprocess.run(probe_cmd("run"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == ExitStatus.STORE
    assert "cannot be opened" in result.stderr and "supervisord" not in result.stdout


def test_a_fatal_program_stops_the_stack_with_a_failure(tmp_path: Path) -> None:
    emulator = serve_emulator()
    run_dir = tempfile.mkdtemp(prefix="pr-")
    # The metrics program, and it alone, dies at every start (a sitecustomize on its path that
    # exits in it), so supervisord gives up on it after its retries: FATAL. (A port taken but not
    # listening no longer serves: probe run's port check now binds, and refuses it at once.)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if b'probe_stack.metrics.server' in open('/proc/self/cmdline', 'rb').read():\n"
        "    print('metrics: made to fail at start by the test', flush=True)\n"
        "    os._exit(1)\n"
    )
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = stack_env(emulator, tmp_path, run_dir, free_port(), LOSS_TIMEOUT, PYTHONPATH=path)
    proc = start(probe_cmd("run"), tmp_path / "stack.log", env=env)
    try:
        code = proc.popen.wait(90)
    finally:
        proc.stop()
        emulator.proc.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    output = proc.output()
    assert code == ExitStatus.FATAL, output
    assert "program metrics went FATAL" in output and "made to fail at start by the test" in output


def test_a_busy_metrics_port_is_named_at_once_with_its_setting(tmp_path: Path) -> None:
    emulator = serve_emulator()
    try:
        with socket.create_server(("127.0.0.1", 0)) as busy:
            port = busy.getsockname()[1]
            env = stack_env(emulator, tmp_path, tempfile.mkdtemp(prefix="pb-"), port, LOSS_TIMEOUT)
            started = time.monotonic()
            result = subprocess.run(probe_cmd("run"), env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == ExitStatus.CONFIG and time.monotonic() - started < 5
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"METRICS_PORT {port}" in lines[0] and "in use" in lines[0], result.stderr
    finally:
        emulator.proc.stop()


def test_with_emulator_never_carries_on_against_a_foreign_process_on_its_port(tmp_path: Path) -> None:
    foreign = serve_emulator()  # something answering like an emulator, but not ours
    try:
        env = stack_env(foreign, tmp_path, tempfile.mkdtemp(prefix="pb-"), free_port(), LOSS_TIMEOUT)
        result = subprocess.run(
            probe_cmd("run", "--with-emulator"), env=env, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == ExitStatus.CONFIG
        assert f"port {foreign.port}" in result.stderr and "in use" in result.stderr
        assert "stack starting" not in result.stdout
    finally:
        foreign.proc.stop()
