"""Time from a SIGKILL of the listener to resubscribed, and the scrape's time after many sender
restarts (each leaves metric files behind for the metrics program to fold)."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from bench import measure
from bench.harness import BenchStack
from bench.skeleton import Results, Scenario, on_emulator
from testkit.emulator import EmulatorClient
from testkit.process import wait_until


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kills", type=int, default=5, help="listener SIGKILLs to time (0 skips restarts)")
    parser.add_argument("--sender-restarts", type=int, default=100, help="sender restarts before the scrape timing")


def run(args: argparse.Namespace, tmp: Path) -> Results:
    if args.kills <= 0:
        return {}
    return {"restarts": run_restarts(args.kills, args.sender_restarts, tmp)}


def _resubscribe_after_kill(emulator: EmulatorClient, stack: BenchStack) -> float:
    pid = stack.pid("listener")
    known = len(emulator.truth()["subscribers"])
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    subs = wait_until(lambda: emulator.truth()["subscribers"][known:], 30, "resubscribed")
    wait_until(lambda: stack.pid("listener") not in (0, pid), 30, "listener RUNNING again")
    return subs[0]["connected_at"] - killed


def _restart_sender(stack: BenchStack, metrics_dir: Path) -> None:
    rpc = stack.rpc()
    rpc.supervisor.stopProcess("sender", True)
    rpc.supervisor.startProcess("sender", False)
    wait_until(lambda: rpc.supervisor.getProcessInfo("sender")["pid"], 10, "sender spawned")
    pid = rpc.supervisor.getProcessInfo("sender")["pid"]
    wait_until(lambda: list(metrics_dir.glob(f"*_{pid}.db")), 20, "the sender's metric files")


def run_restarts(kills: int, sender_restarts: int, tmp: Path) -> dict:
    with on_emulator(tmp, EVENT_INTERVAL_SECONDS=0.5) as (emulator, stack):
        stack.start()
        wait_until(lambda: emulator.subscribers() == 1, 30, "subscribed")
        resubscribe = [_resubscribe_after_kill(emulator, stack) for _ in range(kills)]
        scrape_before = stack.scrape_ms()
        metrics_dir = Path(stack.env["PROMETHEUS_MULTIPROC_DIR"])
        for _ in range(sender_restarts):
            _restart_sender(stack, metrics_dir)
        files = len(list(metrics_dir.iterdir()))
        scrape_after = stack.scrape_ms()
    return {
        "listener_kills": kills,
        "resubscribe_s": {"median": measure.percentile(resubscribe, 50), "max": max(resubscribe)},
        "sender_restarts": sender_restarts,
        "metric_files_after": files,
        "scrape_ms_before": scrape_before,
        "scrape_ms_after": scrape_after,
    }


def report(results: Results) -> list[str]:
    if "restarts" not in results:
        return []
    r = results["restarts"]
    return [
        f"Listener SIGKILL to resubscribed: median {r['resubscribe_s']['median']:.2f} s, "
        f"max {r['resubscribe_s']['max']:.2f} s over {r['listener_kills']} kills. "
        f"`/metrics` scrape: {r['scrape_ms_before']:.1f} ms before, {r['scrape_ms_after']:.1f} ms after "
        f"{r['sender_restarts']} sender restarts ({r['metric_files_after']} files in the metrics directory)."
    ]


SCENARIO = Scenario("restarts", options, run, report)
