"""What `make soak` reads off the running stack every 10 s: memory, threads and descriptors per
program, the store and its WAL, the metrics directory, the scrape, the judge's round and CPU
per event; and every event's newest state, before the store prunes it."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from bench.harness import PROGRAMS, BenchStack, pss_uss, tree_roles
from shared.store import Store

FIGURES = ("rss_mb", "pss_mb", "threads", "fds")
Seen = dict[tuple[str, int], tuple[str, int, float]]  # (dataset, seqno) -> (state, receive count, sent_at)


def parse(exposition: str) -> dict[str, float]:
    """Each metric's value summed over its labels (enough for totals)."""
    out: dict[str, float] = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            with contextlib.suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def program_figures(proc: psutil.Process | None) -> dict[str, float]:
    """One program's memory, threads and descriptors; NaN when it was killed a moment ago."""
    with contextlib.suppress(psutil.Error, OSError, AttributeError):
        return {
            "rss_mb": proc.memory_info().rss / 2**20,
            "pss_mb": pss_uss(proc.pid)[0] / 2**20,
            "threads": proc.num_threads(),
            "fds": proc.num_fds(),
        }
    return dict.fromkeys(FIGURES, float("nan"))


def store_figures(env: dict[str, str]) -> dict[str, float]:
    """The store and its WAL (KB), and the files of the metrics directory."""
    db = Path(env["PROBE_DB_PATH"])
    wal = db.with_name(db.name + "-wal")
    return {
        "store_kb": db.stat().st_size / 1024,
        "wal_kb": wal.stat().st_size / 1024 if wal.exists() else 0.0,
        "metric_files": len(list(Path(env["PROMETHEUS_MULTIPROC_DIR"]).iterdir())),
    }


@dataclass
class Sampler:
    """The figures of one sample, read from the running stack."""

    stack: BenchStack
    root: psutil.Process
    started: float
    cpu_before: float = 0.0
    events_before: float = 0.0
    judge_before: tuple[float, float] = (0.0, 0.0)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)

    def cpu(self) -> float:
        """CPU seconds of the whole tree so far, processes killed since included (as last seen)."""
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                self.cpu_by_pid[proc.pid] = times.user + times.system
        return sum(self.cpu_by_pid.values())

    def exposition(self) -> tuple[str, float]:
        began = time.perf_counter()
        text = requests.get(self.stack.metrics_url, timeout=30).text
        return text, (time.perf_counter() - began) * 1000

    def sample(self) -> dict[str, float]:
        row: dict[str, float] = {"t": time.monotonic() - self.started}
        roles = tree_roles(self.root)
        for name in PROGRAMS:
            row |= {f"{name}_{k}": v for k, v in program_figures(roles.get(name)).items()}
        row |= store_figures(self.stack.env)
        scrapes = sorted(self.exposition() for _ in range(3))
        text = scrapes[1][0]
        row["scrape_ms"] = sorted(s[1] for s in scrapes)[1]
        row["exposition_kb"] = len(text.encode()) / 1024
        return row | self._rates(parse(text))

    def _rates(self, values: dict[str, float]) -> dict[str, float]:
        """Events so far, and since the last sample the judge's mean round and the CPU per event."""
        events = values.get("probe_events_posted_total", 0) + values.get("probe_event_post_errors_total", 0)
        judged = (values.get("probe_judge_round_seconds_sum", 0), values.get("probe_judge_round_seconds_count", 0))
        rounds = judged[1] - self.judge_before[1]
        cpu = self.cpu()
        done = events - self.events_before
        row = {
            "events": events,
            "judge_round_ms": (judged[0] - self.judge_before[0]) * 1000 / rounds if rounds else float("nan"),
            "cpu_ms_per_event": (cpu - self.cpu_before) * 1000 / done if done else float("nan"),
        }
        self.cpu_before, self.events_before, self.judge_before = cpu, events, judged
        return row


def observe(stack: BenchStack, seen: Seen) -> None:
    """Keep the newest state of every event: the store prunes judged events after the retention,
    so the final check reads them from here, sampled far more often than they are pruned."""
    store = Store(stack.env["PROBE_DB_PATH"], create=False)
    try:
        for row in store.events(store.app_id()):
            seen[row.dataset, row.seqno] = (row.state, row.receive_count, row.sent_at)
    finally:
        store.close()
