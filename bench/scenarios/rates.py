"""Steady traffic at each rate, with drops and duplicates: the probe's overhead over the emulator's
true delivery time, its schedule, its cost, and every event against the truth."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import psutil
import requests

from bench import measure
from bench.harness import PROGRAMS, BenchStack, RssSampler
from bench.skeleton import FAULTS, LOSS_TIMEOUT, Results, Scenario, on_emulator, settle, store_bytes, truth_of
from testkit.process import wait_until


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", default="1,10,100,500,1000", help="events per second, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of steady traffic per rate")


def run(args: argparse.Namespace, tmp: Path) -> Results:
    rates = []
    for rate in [float(r) for r in args.rates.split(",")]:
        run_tmp = tmp / f"rate-{rate:g}"
        run_tmp.mkdir()
        rates.append(run_rate(rate, args.duration, run_tmp))
        print(json.dumps(rates[-1]), flush=True)
    held = [r["rate"] for r in rates if r["schedule_holds"] and r["mismatches"] == 0]
    return {"rates": rates, "capacity": max(held, default=0)}


def _skipped(exposed: str, reason: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposed.splitlines()
        if line.startswith("probe_sender_skipped_slots") and f'reason="{reason}"' in line
    )


def _cpu(stack: BenchStack) -> dict[str, float]:
    return {name: sum(psutil.Process(stack.pid(name)).cpu_times()[:2]) for name in PROGRAMS}


def run_rate(rate: float, duration: float, tmp: Path) -> dict:
    """One rate: steady traffic with drops and duplicates, then every event against the truth."""
    settings = {"EVENT_INTERVAL_SECONDS": 1 / rate, "LOSS_TIMEOUT_SECONDS": LOSS_TIMEOUT}
    with on_emulator(tmp, faults=FAULTS, **settings, POST_TIMEOUT_SECONDS=2, POST_CONCURRENCY=32) as (emulator, stack):
        stack.start()
        sampler = RssSampler(stack.proc.popen.pid)
        sampler.start()
        wait_until(lambda: stack.events(), 30, "the first event")
        time.sleep(2)  # warm-up: imports, token, first connections
        cpu_before, seq_before = _cpu(stack), len(stack.events())
        time.sleep(duration)
        cpu_after, seq_after = _cpu(stack), len(stack.events())
        scrape = stack.scrape_ms()
        settle(stack)
        sampler.done.set()
        exposed = requests.get(stack.metrics_url, timeout=10).text
        rows = stack.events()
        truth = truth_of(emulator, stack.app_id(), lambda e: e["seqno"])
        db_bytes, wal_bytes = store_bytes(stack)
    events = seq_after - seq_before
    sched = measure.schedule([r.sent_at for r in rows], 1 / rate)
    window = rows[seq_before:seq_after]  # the measured steady state, after the warm-up
    overhead = measure.overhead_ms({r.seqno: (r.sent_at, r.latency) for r in window if r.latency is not None}, truth)
    bad = measure.mismatches({r.seqno: (r.state, r.receive_count) for r in rows}, truth)
    return {
        "rate": rate,
        "events": len(rows),
        "dropped_injected": sum(e["fate"] == "dropped" for e in truth.values()),
        "duplicates_injected": sum(max(0, len(e["writes"]) - 1) for e in truth.values()),
        "overhead_ms": {
            "p50": measure.percentile(overhead.total, 50),
            "p99": measure.percentile(overhead.total, 99),
            "max": max(overhead.total, default=float("nan")),
            "send_side_p50": measure.percentile(overhead.send, 50),
            "receive_side_p50": measure.percentile(overhead.receive, 50),
        },
        "mismatches": len(bad),
        "mismatch_examples": bad[:5],
        "achieved_rate": sched.achieved_rate,
        "schedule_holds": sched.holds,  # skipped slots lower the achieved rate, so they count here
        "skipped_slots": {reason: _skipped(exposed, reason) for reason in ("stall", "backpressure")},
        "jitter_ms": {"p50": sched.jitter_p50_ms, "p99": sched.jitter_p99_ms, "max": sched.jitter_max_ms},
        "cpu_s_per_1000_events": {n: (cpu_after[n] - cpu_before[n]) * 1000 / max(events, 1) for n in PROGRAMS},
        "peak_rss_mb": sampler.peak / 2**20,
        "peak_pss_mb": sampler.peak_pss / 2**20,
        "sqlite_bytes": db_bytes,
        "sqlite_wal_bytes": wal_bytes,
        "scrape_ms": scrape,
    }


def _row(r: dict) -> str:
    o, j, c = r["overhead_ms"], r["jitter_ms"], r["cpu_s_per_1000_events"]
    return (
        f"| {r['rate']:g} | {r['events']} | {o['p50']:.2f} / {o['p99']:.2f} / {o['max']:.1f} | {r['mismatches']} "
        f"| {r['achieved_rate']:.2f}{'' if r['schedule_holds'] else ' (not held)'} "
        f"| {r['skipped_slots']['stall']:.0f} / {r['skipped_slots']['backpressure']:.0f} | {j['p50']:.2f} / "
        f"{j['p99']:.2f} | {c['sender']:.2f} / {c['listener']:.2f} / {c['metrics']:.2f} "
        f"| {r['peak_rss_mb']:.0f} / {r.get('peak_pss_mb', 0):.0f} "
        f"| {r['sqlite_bytes'] / 1024:.0f} + {r['sqlite_wal_bytes'] / 1024:.0f} "
        f"| {r['scrape_ms']:.1f} |"
    )


def report(results: Results) -> list[str]:
    if "rates" not in results:
        return []
    lines = [
        "| rate (ev/s) | events | overhead p50 / p99 / max (ms) | mismatches | achieved rate | skipped (stall / busy) "
        "| jitter p50 / p99 (ms) "
        "| CPU s per 1000 ev (sender / listener / metrics) | peak RSS / PSS (MB) | SQLite + WAL (KB) | scrape (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *map(_row, results["rates"]),
        "",
    ]
    sides = (
        f"{r['rate']:g} ev/s {r['overhead_ms']['send_side_p50']:.2f} / {r['overhead_ms']['receive_side_p50']:.2f}"
        for r in results["rates"]
        if "send_side_p50" in r["overhead_ms"]
    )
    lines.append(
        "Overhead p50 by side (ms), send time to the emulator's acceptance / its websocket write to receipt: "
        + ", ".join(sides)
        + "."
    )
    lines.append(
        "Capacity (achieved rate within 1% of the target, skipped slots included; exact accounting): "
        f"**{results['capacity']} ev/s** (highest tested rate that met both)."
    )
    return lines


SCENARIO = Scenario("rates", options, run, report)
