"""What the stack costs a machine at one event every 10 s and every 1 s, idle time included: the
tree's start-up CPU (to its first received event), then per process its CPU seconds per hour
and its RSS, PSS and USS at the end."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import psutil

from bench.harness import pss_uss, tree_cpu, tree_roles
from bench.skeleton import Results, Scenario, on_emulator
from testkit.process import wait_until

INTERVALS = (10.0, 1.0)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--footprint-seconds", type=float, default=120.0, help="CPU and memory at 10 s and 1 s intervals (0 skips)"
    )


def run(args: argparse.Namespace, tmp: Path) -> Results:
    if args.footprint_seconds <= 0:
        return {}
    out = []
    for interval in INTERVALS:
        (tmp / f"footprint-{interval:g}").mkdir()
        out.append(run_footprint(interval, args.footprint_seconds, tmp / f"footprint-{interval:g}"))
        print(json.dumps(out[-1]), flush=True)
    return {"footprint": out}


def _process(proc: psutil.Process, cpu_before: float, elapsed: float) -> dict:
    pss, uss = pss_uss(proc.pid)
    return {
        "cpu_s_per_hour": (sum(proc.cpu_times()[:2]) - cpu_before) * 3600 / elapsed,
        "rss_mb": proc.memory_info().rss / 2**20,
        "pss_mb": pss / 2**20,
        "uss_mb": uss / 2**20,
    }


def run_footprint(interval: float, seconds: float, tmp: Path) -> dict:
    with on_emulator(tmp, EVENT_INTERVAL_SECONDS=interval) as (_, stack):
        started = time.monotonic()
        stack.start()
        root = psutil.Process(stack.proc.popen.pid)
        wait_until(lambda: any(e.state == "received" for e in stack.events()), 60, "the first arrival")
        startup_cpu, startup_s = tree_cpu(root), time.monotonic() - started
        time.sleep(max(2.0, interval / 2))  # the start-up's tail: the first judgement round, the first scrape
        roles = tree_roles(root)
        before = {role: sum(p.cpu_times()[:2]) for role, p in roles.items()}
        begin = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - begin
        per = {role: _process(proc, before[role], elapsed) for role, proc in roles.items()}
    total = {key: sum(v[key] for v in per.values()) for key in ("cpu_s_per_hour", "rss_mb", "pss_mb", "uss_mb")}
    return {
        "interval_s": interval,
        "seconds": elapsed,
        "startup_cpu_s": startup_cpu,
        "startup_s": startup_s,
        "processes": per,
        "tree": total,
        "cpu_percent_of_one_core": total["cpu_s_per_hour"] / 36,
    }


def report(results: Results) -> list[str]:
    lines = []
    for f in results.get("footprint", []):
        lines += [
            "",
            f"Footprint at one event every {f['interval_s']:g} s (over {f['seconds']:.0f} s; start-up to the first "
            f"arrival: {f['startup_cpu_s']:.2f} s CPU in {f['startup_s']:.1f} s): "
            f"tree {f['tree']['cpu_s_per_hour']:.1f} CPU s per hour ({f['cpu_percent_of_one_core']:.2f}% of a core), "
            f"{f['tree']['pss_mb']:.0f} MB PSS, {f['tree']['uss_mb']:.0f} MB USS, {f['tree']['rss_mb']:.0f} MB RSS.",
            "",
            "| process | CPU s per hour | RSS (MB) | PSS (MB) | USS (MB) |",
            "|---|---|---|---|---|",
        ]
        for role, v in f["processes"].items():
            lines.append(
                f"| {role} | {v['cpu_s_per_hour']:.2f} | {v['rss_mb']:.1f} | {v['pss_mb']:.1f} | {v['uss_mb']:.1f} |"
            )
        lines.append("")
    return lines


SCENARIO = Scenario("footprint", options, run, report)
