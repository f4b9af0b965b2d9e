"""Many datasets in one probe (one schedule and one subscription each): exact accounting, CPU per
event, and the tree's peak memory."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import psutil

from bench import measure
from bench.harness import RssSampler, tree_cpu
from bench.skeleton import FAULTS, LOSS_TIMEOUT, Results, Scenario, on_emulator, settle, truth_of
from testkit.process import wait_until


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", type=int, default=50, help="datasets at 1 ev/s each in one probe (0 skips)")
    parser.add_argument("--datasets-seconds", type=float, default=30.0, help="steady traffic of the datasets run")


def run(args: argparse.Namespace, tmp: Path) -> Results:
    if args.datasets <= 0:
        return {}
    return {"datasets": run_datasets(args.datasets, 1.0, args.datasets_seconds, tmp)}


def run_datasets(count: int, interval: float, duration: float, tmp: Path) -> dict:
    names = [f"bench-{i:02d}" for i in range(count)]
    config = tmp / "probe.yaml"
    config.write_text("environment: local\ndatasets:\n" + "".join(f"  - id: {n}\n" for n in names))
    settings = {"EVENT_INTERVAL_SECONDS": interval, "LOSS_TIMEOUT_SECONDS": LOSS_TIMEOUT, "POST_TIMEOUT_SECONDS": 2}
    datasets = (a for n in names for a in ("--dataset", f"{n}/1"))
    with on_emulator(tmp, *datasets, faults=FAULTS, PROBE_CONFIG=str(config), **settings) as (emulator, stack):
        stack.start()
        sampler = RssSampler(stack.proc.popen.pid)
        sampler.start()
        wait_until(lambda: len({e.dataset for e in stack.events()}) == count, 60, "an event of every dataset")
        time.sleep(2)
        root = psutil.Process(stack.proc.popen.pid)
        cpu_before, events_before = tree_cpu(root), len(stack.events())
        time.sleep(duration)
        cpu_after, events_after = tree_cpu(root), len(stack.events())
        settle(stack)
        sampler.done.set()
        rows = stack.events()
        truth = truth_of(emulator, stack.app_id(), lambda e: (e["dataset"], e["seqno"]))
    bad = measure.mismatches({(r.dataset, r.seqno): (r.state, r.receive_count) for r in rows}, truth)
    events = events_after - events_before
    return {
        "datasets": count,
        "interval_s": interval,
        "events": len(rows),
        "datasets_seen": len({r.dataset for r in rows}),
        "mismatches": len(bad),
        "mismatch_examples": [list(map(str, b)) for b in bad[:5]],
        "achieved_rate": events / duration,
        "target_rate": count / interval,
        "tree_cpu_ms_per_event": (cpu_after - cpu_before) * 1000 / max(events, 1),
        "peak_rss_mb": sampler.peak / 2**20,
        "peak_pss_mb": sampler.peak_pss / 2**20,
    }


def report(results: Results) -> list[str]:
    if "datasets" not in results:
        return []
    d = results["datasets"]
    return [
        f"{d['datasets']} datasets at {1 / d['interval_s']:g} ev/s each: {d['events']} events, "
        f"{d['mismatches']} mismatches, achieved {d['achieved_rate']:.1f} of {d['target_rate']:g} ev/s, "
        f"tree CPU {d['tree_cpu_ms_per_event']:.2f} ms per event, peak RSS {d['peak_rss_mb']:.0f} MB "
        f"(PSS {d['peak_pss_mb']:.0f} MB)."
    ]


SCENARIO = Scenario("datasets", options, run, report)
