"""The cached collector serves exactly what prometheus_client's own would, restarts and all."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from probe_stack.multiproc_cache import DeadFilesCachedCollector, file_pid
from tests.helpers import ROOT, wait_until

# A program's metrics as the sender writes them: counters, a histogram, max and mostrecent
# gauges; `step` makes each process's values its own. With "stay", it lives on until stdin closes.
WRITER = """
import sys, time
from shared import metrics
step = int(sys.argv[1])
metrics.events_posted.labels("ds").inc(step)
metrics.post_duration.labels("ds").observe(step / 100)
metrics.last_sent.labels("ds").set(1000 + step)
metrics.latest_latency.labels("ds").set(step)
metrics.ws_connected.labels("ds").set(1)
print("ready", flush=True)
if sys.argv[2] == "stay":
    sys.stdin.read()
"""


def write(metrics_dir: Path, step: int, stay: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(step), "stay" if stay else "exit"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    if not stay:
        proc.wait(30)
    return proc


def samples(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample line as name{labels} -> value."""
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def same(ours: dict[str, float], metrics_dir: Path) -> bool:
    """The same series and values as prometheus_client's own collector serves. Sums of fractions
    may differ in their last bit, as they do between two of its own scrapes: files are summed
    in directory order."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(metrics_dir))
    theirs = samples(registry)
    return ours.keys() == theirs.keys() and all(math.isclose(ours[k], theirs[k], rel_tol=1e-12) for k in ours)


def test_a_file_name_gives_its_pid() -> None:
    assert file_pid("/m/counter_123.db") == 123 and file_pid("gauge_livemostrecent_7.db") == 7
    assert file_pid("/m/.dataplatform-probe-metrics.db") is None


def test_the_cache_serves_what_prometheus_client_serves_as_processes_die_and_live(tmp_path: Path) -> None:
    for step in range(1, 6):  # five restarts' worth of dead processes
        write(tmp_path, step)
    living = write(tmp_path, 10, stay=True)
    try:
        registry = CollectorRegistry()
        cached = DeadFilesCachedCollector(registry, str(tmp_path))
        for _ in range(2):  # the second scrape comes from the cache for the dead
            assert same(samples(registry), tmp_path)
        assert len(cached._dead_files or ()) >= 15  # the dead processes' files were cached
        write(tmp_path, 20)  # one more restart: the cache is read again
        ours = samples(registry)
        assert same(ours, tmp_path)
        assert ours['probe_events_posted_total{dataset="ds"}'] == 45  # 1+2+3+4+5+10+20
        assert ours['probe_last_event_sent_timestamp_seconds{dataset="ds"}'] == 1020  # max over all
    finally:
        assert living.stdin is not None
        living.stdin.close()
        living.wait(30)
    wait_until(lambda: not os.path.exists(f"/proc/{living.pid}"), 10, "the living writer gone")
    # Now dead too: its files move to the cache, and the sums stay the same.
    assert same(samples(registry), tmp_path)
