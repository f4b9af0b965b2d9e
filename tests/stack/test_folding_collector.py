"""The folding collector serves exactly what prometheus_client's own would, restarts and all,
from a directory whose file count stops growing with restarts."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from probe_stack.metrics.folding_collector import FoldingCollector
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
    return close(ours, theirs)


def test_the_collector_serves_what_prometheus_client_serves_as_processes_die_and_live(tmp_path: Path) -> None:
    for step in range(1, 6):  # five restarts' worth of dead processes
        write(tmp_path, step)
    living = write(tmp_path, 10, stay=True)
    try:
        registry = CollectorRegistry()
        FoldingCollector(registry, str(tmp_path))
        unfolded = prometheus_collector(tmp_path)  # read before the first fold
        assert close(samples(registry), unfolded)
        assert same(samples(registry), tmp_path)  # prometheus_client reads the archives alike
        pids = {name.rsplit("_", 1)[-1] for name in os.listdir(tmp_path) if "_live" not in name}
        assert pids == {"archive.db", f"{living.pid}.db"}  # the dead ones' files are folded
        files = len(os.listdir(tmp_path))
        write(tmp_path, 20)  # one more restart: folded at the next scrape, no more files
        ours = samples(registry)
        assert same(ours, tmp_path)
        assert len([n for n in os.listdir(tmp_path) if "_live" not in n]) <= files
        assert ours['probe_events_posted_total{dataset="ds"}'] == 45  # 1+2+3+4+5+10+20
        assert ours['probe_last_event_sent_timestamp_seconds{dataset="ds"}'] == 1020  # max over all
    finally:
        assert living.stdin is not None
        living.stdin.close()
        living.wait(30)
    wait_until(lambda: not os.path.exists(f"/proc/{living.pid}"), 10, "the living writer gone")
    # Now dead too: its files are folded, and the sums stay the same.
    before = prometheus_collector(tmp_path)
    assert close(samples(registry), before)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(f"_{living.pid}.db") and "_live" not in n]


def test_a_directory_with_a_metric_files_name_is_skipped_not_folded(tmp_path: Path) -> None:
    write(tmp_path, 1)
    (tmp_path / "counter_2.db").mkdir()
    registry = CollectorRegistry()
    FoldingCollector(registry, str(tmp_path))
    assert samples(registry)['probe_events_posted_total{dataset="ds"}'] == 1
    assert (tmp_path / "counter_2.db").is_dir()


def close(ours: dict[str, float], theirs: dict[str, float]) -> bool:
    """The same series and values, but for the last bit of sums of fractions (added in another order)."""
    return ours.keys() == theirs.keys() and all(math.isclose(ours[k], theirs[k], rel_tol=1e-12) for k in ours)


def prometheus_collector(metrics_dir: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(metrics_dir))
    return samples(registry)
