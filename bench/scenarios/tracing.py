"""Peak RSS of the sender and the listener at 10 ev/s with X-Ray tracing off, then on (a UDP sink
as the daemon): what tracing costs in memory."""

from __future__ import annotations

import argparse
import contextlib
import socket
import time
from pathlib import Path

import psutil

from bench.skeleton import Results, Scenario, on_emulator
from testkit.process import wait_until


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracing-seconds", type=float, default=15.0, help="peak memory with tracing off and on (0 skips it)"
    )


def run(args: argparse.Namespace, tmp: Path) -> Results:
    if args.tracing_seconds <= 0:
        return {}
    return {"tracing_rss_mb": run_tracing_memory(args.tracing_seconds, tmp)}


def run_tracing_memory(seconds: float, tmp: Path) -> dict:
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        for tracing in (False, True):
            run_tmp = tmp / ("on" if tracing else "off")
            run_tmp.mkdir()
            daemon = f"127.0.0.1:{sink.getsockname()[1]}"
            settings = {"AWS_XRAY_SDK_ENABLED": str(tracing).lower(), "AWS_XRAY_DAEMON_ADDRESS": daemon}
            with on_emulator(run_tmp, EVENT_INTERVAL_SECONDS=0.1, **settings) as (_, stack):
                stack.start()
                wait_until(lambda s=stack: s.events(), 30, "the first event")
                peaks = dict.fromkeys(("sender", "listener"), 0)
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    for name in peaks:
                        with contextlib.suppress(psutil.Error, OSError):
                            peaks[name] = max(peaks[name], psutil.Process(stack.pid(name)).memory_info().rss)
                    time.sleep(0.5)
            out["on" if tracing else "off"] = {name: rss / 2**20 for name, rss in peaks.items()}
    return out


def report(results: Results) -> list[str]:
    if "tracing_rss_mb" not in results:
        return []
    t = results["tracing_rss_mb"]
    return [
        "Peak RSS at 10 ev/s, X-Ray tracing off / on: "
        f"sender {t['off']['sender']:.0f} / {t['on']['sender']:.0f} MB, "
        f"listener {t['off']['listener']:.0f} / {t['on']['listener']:.0f} MB."
    ]


SCENARIO = Scenario("tracing", options, run, report)
