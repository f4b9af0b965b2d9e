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
import csv
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import requests

from bench import soak_judge
from bench.harness import PROGRAMS, BenchStack, pss_uss, tree_roles
from shared.store import Store
from testkit.emulator import EmulatorClient, start_emulator
from testkit.process import wait_until

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("soak-a", "soak-b", "soak-padded")
PADDING = 2048
FAULTS = {"delay_ms": 20, "delay_spread_ms": 10, "delay_distribution": "uniform", "drop_rate": 0.01}
FAULTS |= {"duplicate_rate": 0.01, "close_every_seconds": 45, "seed": 7}
LOSS_TIMEOUT = 5.0
RETENTION = 120.0  # the smallest allowed; the listener prunes a minute after each start
SAMPLE_EVERY = 10.0
KILL_EVERY = 60.0
STORE_FULL_SECONDS = 30.0
MEMORY_LIMIT = 0.05  # each program's fitted memory moves at most this share over the second half
SCRAPE_LIMIT = 1.5  # the scrape at the end at most this many times the one at the half-way point
METRIC_FILES_LIMIT = 48  # files in the metrics directory, whatever the count of restarts
FIGURES = ("rss_mb", "pss_mb", "threads", "fds")


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
            proc = roles.get(name)
            values = dict.fromkeys(FIGURES, float("nan"))
            with contextlib.suppress(psutil.Error, OSError, AttributeError):  # killed a moment ago
                values = {
                    "rss_mb": proc.memory_info().rss / 2**20,
                    "pss_mb": pss_uss(proc.pid)[0] / 2**20,
                    "threads": proc.num_threads(),
                    "fds": proc.num_fds(),
                }
            row |= {f"{name}_{k}": v for k, v in values.items()}
        db = Path(self.stack.env["PROBE_DB_PATH"])
        wal = db.with_name(db.name + "-wal")
        row["store_kb"] = db.stat().st_size / 1024
        row["wal_kb"] = wal.stat().st_size / 1024 if wal.exists() else 0.0
        row["metric_files"] = len(list(Path(self.stack.env["PROMETHEUS_MULTIPROC_DIR"]).iterdir()))
        scrapes = sorted(self.exposition() for _ in range(3))
        text = scrapes[1][0]
        row["scrape_ms"] = sorted(s[1] for s in scrapes)[1]
        row["exposition_kb"] = len(text.encode()) / 1024
        values = parse(text)
        row["events"] = values.get("probe_events_posted_total", 0) + values.get("probe_event_post_errors_total", 0)
        judged = (values.get("probe_judge_round_seconds_sum", 0), values.get("probe_judge_round_seconds_count", 0))
        rounds = judged[1] - self.judge_before[1]
        row["judge_round_ms"] = (judged[0] - self.judge_before[0]) * 1000 / rounds if rounds else float("nan")
        cpu = self.cpu()
        done = row["events"] - self.events_before
        row["cpu_ms_per_event"] = (cpu - self.cpu_before) * 1000 / done if done else float("nan")
        self.cpu_before, self.events_before, self.judge_before = cpu, row["events"], judged
        return row


def parse(exposition: str) -> dict[str, float]:
    """Each metric's value summed over its labels (enough for totals)."""
    out: dict[str, float] = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            with contextlib.suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def observe(stack: BenchStack, seen: dict[tuple[str, int], tuple[str, int, float]]) -> None:
    """Keep the newest state of every event: the store prunes judged events after the retention,
    so the final check reads them from here, sampled far more often than they are pruned."""
    store = Store(stack.env["PROBE_DB_PATH"], create=False)
    try:
        for row in store.events(store.app_id()):
            seen[row.dataset, row.seqno] = (row.state, row.receive_count, row.sent_at)
    finally:
        store.close()


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
                proc.rlimit(psutil.RLIMIT_FSIZE, (hard if limit is None else min(limit, hard), hard))


def judge_all(
    seen: dict[tuple[str, int], tuple[str, int, float]],
    emulator: EmulatorClient,
    app_id: str,
    probe_blind: list[soak_judge.Interval],
) -> tuple[int, list[str]]:
    """Every observed event against the truth: (events checked, examples of mismatches)."""
    # An hour's truth is a few hundred MB of JSON: one dataset at a time, with time to build it.
    truth: dict = {"events": [], "subscribers": []}
    for dataset in DATASETS:
        answer = emulator.session.get(f"{emulator.base}/_emulator/truth", params={"dataset": dataset}, timeout=600)
        answer.raise_for_status()
        part = answer.json()
        truth["events"] += part["events"]
        truth["subscribers"] = part["subscribers"]
    events = {(e["dataset"], e["seqno"]): e for e in truth["events"] if e["app_id"] == app_id}
    subs: dict[str, list[soak_judge.Interval]] = {}
    for s in truth["subscribers"]:
        subs.setdefault(s["dataset"], []).append(soak_judge.Interval(s["connected_at"], s["closed_at"] or float("inf")))
    bad = []
    for (ds, seqno), (state, count, sent_at) in sorted(seen.items()):
        why = soak_judge.verdict(
            state, count, sent_at, events.get((ds, seqno)), subs.get(ds, []), LOSS_TIMEOUT, probe_blind=probe_blind
        )
        if why:
            bad.append(f"{ds}/{seqno} {state}x{count}: {why}")
    unseen = [key for key in events if key not in seen]
    bad += [f"{ds}/{seqno}: accepted by the collector, never seen in the store" for ds, seqno in unseen]
    return len(seen), bad


def run(hours: float, rate: float, tmp: Path, out: Path) -> dict:
    emulator = start_emulator(tmp, *(a for n in DATASETS for a in ("--dataset", f"{n}/1")))
    emulator.faults(**FAULTS)
    config = tmp / "probe.yaml"
    per_dataset = len(DATASETS) / rate
    config.write_text(
        "environment: local\ndatasets:\n"
        + "".join(f"  - id: {n}\n    interval_seconds: {per_dataset}\n" for n in DATASETS[:-1])
        + f"  - id: {DATASETS[-1]}\n    interval_seconds: {per_dataset}\n    payload_bytes: {PADDING}\n"
    )
    stack = BenchStack.create(
        emulator,
        tmp,
        PROBE_CONFIG=str(config),
        LOSS_TIMEOUT_SECONDS=LOSS_TIMEOUT,
        RETENTION_SECONDS=RETENTION,
        POST_TIMEOUT_SECONDS=2,
        MAX_CONSECUTIVE_ERRORS=0,
    )
    rows: list[dict[str, float]] = []
    seen: dict[tuple[str, int], tuple[str, int, float]] = {}
    kills = {"sender": 0, "listener": 0}
    loads: list[float] = []  # the machine's 1-minute load average at each sample: it may be shared
    duration = hours * 3600
    try:
        stack.start()
        wait_until(lambda: len({e.dataset for e in stack.events()}) == len(DATASETS), 60, "every dataset's events")
        sampler = Sampler(stack, psutil.Process(stack.proc.popen.pid), time.monotonic())
        sampler.sample()  # the baselines of the per-sample deltas
        rng = random.Random(1)
        start = time.monotonic()
        next_sample, next_kill = start + SAMPLE_EVERY, start + KILL_EVERY
        full_at = start + duration * 0.35
        full_until: float | None = None
        store_full_wall = [0.0, float("inf")]  # when the probe could not record: the truth's clock
        victim = "sender"
        while (now := time.monotonic()) < start + duration:
            if full_until is None and now >= full_at:
                db = Path(stack.env["PROBE_DB_PATH"])
                store_full(stack, max(db.stat().st_size, 2**20) + 2**20)
                store_full_wall[0] = time.time()
                full_until = now + STORE_FULL_SECONDS
                next_kill = max(next_kill, full_until + 5)  # a restart would drop the limit early
            elif full_until is not None and full_until < now < full_until + 1:
                store_full(stack, None)
                store_full_wall[1] = min(store_full_wall[1], time.time())
            if now >= next_kill:
                with contextlib.suppress(OSError, psutil.Error):
                    os.kill(stack.pid(victim), signal.SIGKILL)
                    kills[victim] += 1
                victim = "listener" if victim == "sender" else "sender"
                next_kill = now + KILL_EVERY * rng.uniform(0.8, 1.2)
            if now >= next_sample:
                rows.append(sampler.sample())
                loads.append(os.getloadavg()[0])
                observe(stack, seen)
                print(json.dumps({k: round(v, 3) for k, v in rows[-1].items()}), flush=True)
                next_sample += SAMPLE_EVERY
            time.sleep(0.5)
        store_full(stack, None)
        stack.stop_sender()
        stack.wait_judged(LOSS_TIMEOUT + 60)
        observe(stack, seen)
        episode = [soak_judge.Interval(*store_full_wall)] if store_full_wall[0] else []
        checked, bad = judge_all(seen, emulator, stack.app_id(), episode)
    finally:
        stack.stop()
        emulator.proc.stop()
    write_csv(rows, out.with_suffix(".csv"))
    result = report(rows, checked, bad, kills, hours, rate)
    result["load"] = {"mean": statistics.fmean(loads), "max": max(loads), "cpus": os.cpu_count()}
    return result


def write_csv(rows: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["events"], r[key]) for r in rows if r[key] == r[key]]  # NaN: killed at that moment
    return [p[0] for p in pairs], [p[1] for p in pairs]


def report(rows: list[dict[str, float]], checked: int, bad: list[str], kills: dict, hours: float, rate: float) -> dict:
    """Every figure's trend, and the limits it is held to."""
    keys = [k for k in rows[0] if k not in ("t", "events")]
    trends = {k: soak_judge.trend(*_series(rows, k)) for k in keys}
    failures = []
    for name in PROGRAMS:
        for figure in ("rss_mb", "pss_mb"):
            change = soak_judge.window_change(_series(rows, f"{name}_{figure}")[1])
            if abs(change) > MEMORY_LIMIT:
                failures.append(f"{name} {figure} moved {change:+.1%} from the half-way point to the end")
    bound = max(r["store_kb"] + r["wal_kb"] for r in rows[: len(rows) // 2])
    size = rows[-1]["store_kb"] + rows[-1]["wal_kb"]
    if size > bound * 1.1:
        failures.append(f"store + WAL {size:.0f} KB at the end, above the first half's {bound:.0f}")
    if max(r["metric_files"] for r in rows) > METRIC_FILES_LIMIT:
        failures.append(f"{max(r['metric_files'] for r in rows):.0f} files in the metrics directory")
    scrape = soak_judge.window_change(_series(rows, "scrape_ms")[1])
    if scrape > SCRAPE_LIMIT - 1:
        failures.append(f"scrape time moved {scrape:+.0%} from the half-way point to the end")
    if bad:
        failures.append(f"{len(bad)} events differ from the truth")
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "hours": hours,
        "rate": rate,
        "events": rows[-1]["events"],
        "samples": len(rows),
        "kills": kills,
        "checked": checked,
        "mismatches": len(bad),
        "mismatch_examples": bad[:10],
        "trends": {k: vars(t) for k, t in trends.items()},
        "failures": failures,
    }


def draw(rows: list[dict[str, float]], path: Path) -> bool:
    """The curves as a PNG; False when matplotlib is missing (a dev dependency)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels: list[tuple[str, Callable[[str], bool]]] = [
        ("RSS (MB)", lambda k: k.endswith("_rss_mb")),
        ("threads / fds", lambda k: k.endswith(("_threads", "_fds"))),
        ("store, WAL, exposition (KB)", lambda k: k in ("store_kb", "wal_kb", "exposition_kb")),
        ("metric files", lambda k: k == "metric_files"),
        ("scrape, judge round (ms)", lambda k: k in ("scrape_ms", "judge_round_ms")),
        ("CPU ms per event", lambda k: k == "cpu_ms_per_event"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
    for ax, (title, wanted) in zip(axes, panels, strict=True):
        for key in [k for k in rows[0] if wanted(k)]:
            ax.plot(*_series(rows, key), label=key, linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("events")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return True


def markdown(result: dict, png: bool) -> str:
    kills = result["kills"]
    lines = [
        f"Soak measured {result['when']}: {result['hours']:g} h at {result['rate']:g} ev/s, "
        f"{result['events']:.0f} events, {kills['sender']} sender and {kills['listener']} listener kills, "
        "one store-full episode.",
        f"Every event against the truth: {result['checked']} checked, {result['mismatches']} mismatches.",
        *_load_line(result.get("load")),
        "",
        "| figure | per 100,000 events | half-way | end |",
        "|---|---|---|---|",
    ]
    for key, t in result["trends"].items():
        lines.append(f"| {key} | {t['per_100k_events']:+.3g} | {t['start']:.3g} | {t['end']:.3g} |")
    failures = result["failures"]
    lines += ["", "Verdict: " + ("**fail**: " + "; ".join(failures) if failures else "**pass**")]
    if png:
        lines += ["", "![soak curves](soak.png)"]
    return "\n".join(lines) + "\n"


def _load_line(load: dict | None) -> list[str]:
    """The machine's load while it ran: on a shared machine the CPU and timing figures carry it."""
    if not load:
        return []
    return [
        f"Machine load (1-minute average) during the run: mean {load['mean']:.1f}, max {load['max']:.1f} "
        f"on {load['cpus']} CPUs."
    ]


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--hours", type=float, default=1.0, help="how long to run (a 24 h profile: --hours 24)")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second over the three datasets")
    parser.add_argument("--out", default=str(RESULTS / "soak"), help="output path without extension")
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
    if args.redraw:  # the figures and the curves again from a run's CSV and JSON, nothing run
        result = json.loads(out.with_suffix(".json").read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="probe-soak-") as tmp_dir:
            result = run(args.hours, args.rate, Path(tmp_dir), out)
    with out.with_suffix(".csv").open() as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    png = draw(rows, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result, png))
    print(markdown(result, png))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
