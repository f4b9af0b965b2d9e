"""`make soak` / `python -m bench.soak`: a month of the probe's life packed into about an hour.

The real supervised stack runs against the emulator at ~100 ev/s over three datasets (one
padded), with drops, duplicates, delays and forced websocket closes; a kill -9 of the sender
or the listener every ~60 s; one store-full episode (a file-size limit on both programs,
then lifted); and a retention short enough that pruning runs many times. Every 10 s it
samples what grows in a long life (memory, threads, descriptors, the store, the metrics
directory, scrape time, the judge's round, CPU per event) into a CSV; it then fits each
figure's trend over the second half, judges every event against the emulator's truth, draws
the curves, and exits non-zero when a limit is broken. Everything runs on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import output, soak_judge, soak_report
from bench.harness import BenchStack
from bench.skeleton import on_emulator
from bench.soak_sampler import Sampler, Seen, observe
from testkit.emulator import EmulatorClient
from testkit.process import wait_until

DATASETS = ("soak-a", "soak-b", "soak-padded")
PADDING = 2048
FAULTS = {"delay_ms": 20, "delay_spread_ms": 10, "delay_distribution": "uniform", "drop_rate": 0.01}
FAULTS |= {"duplicate_rate": 0.01, "close_every_seconds": 45, "seed": 7}
LOSS_TIMEOUT = 5.0
RETENTION = 120.0  # the smallest allowed; the listener prunes a minute after each start
SAMPLE_EVERY = 10.0
KILL_EVERY = 60.0
STORE_FULL_SECONDS = 30.0


def store_full(stack: BenchStack, limit: int | None) -> None:
    """A file-size limit on the sender and the listener (None lifts it): their store writes fail.

    The soft limit only: raising a hard limit again takes CAP_SYS_RESOURCE, which a container
    rarely has, and a lift that failed unnoticed would leave the store full until each
    program's next restart while the judge took the episode for over.
    """
    for name in ("sender", "listener"):
        pid = stack.pid(name)
        with contextlib.suppress(psutil.NoSuchProcess):  # gone: restarted without the limit
            proc = psutil.Process(pid) if pid else None
            if proc is not None:
                hard = proc.rlimit(psutil.RLIMIT_FSIZE)[1]
                proc.rlimit(psutil.RLIMIT_FSIZE, (soft_limit(limit, hard), hard))


def soft_limit(limit: int | None, hard: int) -> int:
    """The soft file-size limit for `limit` (None: lifted) under `hard`, which may be unlimited
    (RLIM_INFINITY, -1 here: min() would take it for the lower)."""
    if limit is None or (hard != psutil.RLIM_INFINITY and hard < limit):
        return hard
    return limit


def read_truth(emulator: EmulatorClient, app_id: str) -> tuple[dict, dict[str, list[soak_judge.Interval]]]:
    """The emulator's record of the stack's events by (dataset, seqno), and each dataset's subscriptions.

    An hour's truth is a few hundred MB of JSON: one dataset at a time, with time to build it.
    """
    events: dict = {}
    subs: dict[str, list[soak_judge.Interval]] = {}
    for dataset in DATASETS:
        answer = emulator.session.get(f"{emulator.base}/_emulator/truth", params={"dataset": dataset}, timeout=600)
        answer.raise_for_status()
        part = answer.json()
        events |= {(e["dataset"], e["seqno"]): e for e in part["events"] if e["app_id"] == app_id}
        subscribers = part["subscribers"]
    for s in subscribers:
        subs.setdefault(s["dataset"], []).append(soak_judge.Interval(s["connected_at"], s["closed_at"] or float("inf")))
    return events, subs


def judge_all(
    seen: Seen, emulator: EmulatorClient, app_id: str, probe_blind: list[soak_judge.Interval]
) -> tuple[int, list[str]]:
    """Every observed event against the truth: (events checked, examples of mismatches)."""
    events, subs = read_truth(emulator, app_id)
    bad = []
    for (ds, seqno), (state, count, sent_at) in sorted(seen.items()):
        truth, intervals = events.get((ds, seqno)), subs.get(ds, [])
        why = soak_judge.verdict(state, count, sent_at, truth, intervals, LOSS_TIMEOUT, probe_blind=probe_blind)
        if why:
            bad.append(f"{ds}/{seqno} {state}x{count}: {why}")
    unseen = [key for key in events if key not in seen]
    bad += [f"{ds}/{seqno}: accepted by the collector, never seen in the store" for ds, seqno in unseen]
    return len(seen), bad


@dataclass
class Episode:
    """The store-full episode: the limit set at `at` (monotonic), lifted once STORE_FULL_SECONDS later
    however late the loop comes round, and the wall-clock span the judge takes as probe-blind."""

    at: float
    until: float | None = None
    lifted: bool = False
    wall: list[float] = field(default_factory=lambda: [0.0, float("inf")])

    def step(self, stack: BenchStack, now: float) -> float | None:
        """Set or lift the limit when due; when set, the time before which no kill may come
        (a restart would drop the limit early)."""
        if self.until is None and now >= self.at:
            db = Path(stack.env["PROBE_DB_PATH"])
            store_full(stack, max(db.stat().st_size, 2**20) + 2**20)
            self.wall[0] = time.time()
            self.until = now + STORE_FULL_SECONDS
            return self.until + 5
        if self.until is not None and not self.lifted and now >= self.until:
            store_full(stack, None)
            self.wall[1], self.lifted = time.time(), True
        return None

    def blind(self) -> list[soak_judge.Interval]:
        return [soak_judge.Interval(*self.wall)] if self.wall[0] else []


@dataclass
class Soak:
    """The loop's state: samples, every event's newest state, kills, the machine's load."""

    stack: BenchStack
    sampler: Sampler
    episode: Episode
    next_sample: float
    next_kill: float
    rows: list[dict[str, float]] = field(default_factory=list)
    seen: Seen = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=lambda: {"sender": 0, "listener": 0})
    loads: list[float] = field(default_factory=list)  # the 1-minute load average at each sample
    victim: str = "sender"
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def tick(self, now: float) -> None:
        no_kill_before = self.episode.step(self.stack, now)
        if no_kill_before is not None:
            self.next_kill = max(self.next_kill, no_kill_before)
        if now >= self.next_kill:
            with contextlib.suppress(OSError, psutil.Error):
                os.kill(self.stack.pid(self.victim), signal.SIGKILL)
                self.kills[self.victim] += 1
            self.victim = "listener" if self.victim == "sender" else "sender"
            self.next_kill = now + KILL_EVERY * self.rng.uniform(0.8, 1.2)
        if now >= self.next_sample:
            self.rows.append(self.sampler.sample())
            self.loads.append(os.getloadavg()[0])
            observe(self.stack, self.seen)
            print(json.dumps({k: round(v, 3) for k, v in self.rows[-1].items()}), flush=True)
            self.next_sample += SAMPLE_EVERY


def write_config(path: Path, rate: float) -> None:
    """Three datasets sharing `rate`, the last one padded."""
    per_dataset = len(DATASETS) / rate
    path.write_text(
        "environment: local\ndatasets:\n"
        + "".join(f"  - id: {n}\n    interval_seconds: {per_dataset}\n" for n in DATASETS[:-1])
        + f"  - id: {DATASETS[-1]}\n    interval_seconds: {per_dataset}\n    payload_bytes: {PADDING}\n"
    )


def run(hours: float, rate: float, tmp: Path, out: Path) -> dict:
    write_config(tmp / "probe.yaml", rate)
    settings = {"PROBE_CONFIG": str(tmp / "probe.yaml"), "LOSS_TIMEOUT_SECONDS": LOSS_TIMEOUT}
    settings |= {"RETENTION_SECONDS": RETENTION, "POST_TIMEOUT_SECONDS": 2, "MAX_CONSECUTIVE_ERRORS": 0}
    datasets = (a for n in DATASETS for a in ("--dataset", f"{n}/1"))
    with on_emulator(tmp, *datasets, faults=FAULTS, **settings) as (emulator, stack):
        stack.start()
        wait_until(lambda: len({e.dataset for e in stack.events()}) == len(DATASETS), 60, "every dataset's events")
        sampler = Sampler(stack, psutil.Process(stack.proc.popen.pid), time.monotonic())
        sampler.sample()  # the baselines of the per-sample deltas
        start = time.monotonic()
        duration = hours * 3600
        soak = Soak(stack, sampler, Episode(start + duration * 0.35), start + SAMPLE_EVERY, start + KILL_EVERY)
        while (now := time.monotonic()) < start + duration:
            soak.tick(now)
            time.sleep(0.5)
        store_full(stack, None)
        stack.stop_sender()
        stack.wait_judged(LOSS_TIMEOUT + 60)
        observe(stack, soak.seen)
        checked, bad = judge_all(soak.seen, emulator, stack.app_id(), soak.episode.blind())
    soak_report.write_csv(soak.rows, out.with_suffix(".csv"))
    result = soak_report.report(soak.rows, checked, bad, soak.kills, hours, rate)
    result["load"] = {"mean": statistics.fmean(soak.loads), "max": max(soak.loads), "cpus": os.cpu_count()}
    return result


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--hours", type=float, default=1.0, help="how long to run (a 24 h profile: --hours 24)")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second over the three datasets")
    parser.add_argument("--out", default=str(output.RESULTS / "soak"), help="output path without extension")
    parser.add_argument("--redraw", action="store_true", help="redraw the report and curves of the last run only")
    args = parser.parse_args()
    if not 0 < args.hours <= 24 * 7 or not 1 <= args.rate <= 500:
        parser.error("--hours must be in (0, 168] and --rate in [1, 500]")
    # Stopped early (SIGTERM, or SIGINT, which a background job starts with ignored), it still
    # stops the stack and the emulator it started: the `finally` of run() must get to run.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupted)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.redraw:  # the figures, the verdict and the curves again from a run's CSV and JSON, nothing run
        result = json.loads(out.with_suffix(".json").read_text())
        result["failures"] = soak_report.failures(soak_report.read_csv(out.with_suffix(".csv")), result["mismatches"])
    else:
        with tempfile.TemporaryDirectory(prefix="probe-soak-") as tmp_dir:
            result = run(args.hours, args.rate, Path(tmp_dir), out)
    png = soak_report.draw(soak_report.read_csv(out.with_suffix(".csv")), out.with_suffix(".png"))
    output.write(out, result, soak_report.markdown(result, png))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
