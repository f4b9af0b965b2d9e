"""`python -m bench.hostile`: the good dataset's latency alone, and beside five hostile neighbours.

Issue 22's six-dataset probe, re-runnable: one probe (the real supervised stack) watches
  good      an honest dataset on the emulator,
  hang      a collector that never answers (the emulator holds its posts for a minute),
  flood     a websocket that pushes forged copies of our events as fast as it can,
  fragments a websocket that sends 100 MB messages as 60 KB continuation frames,
  creds     a wrong webhook token (the subscription is refused with 403),
  auth401   a collector that answers 401 to every post,
all on loopback: the emulator and the small hostile peers of testkit/hostile.py. The target
(issue 22): the good dataset's p99 latency beside its neighbours within 2x of its value alone.
Results go to bench/results/hostile.json and .md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench import measure, output
from bench.harness import BenchStack
from bench.skeleton import on_emulator, truth_of
from shared.store import EventRow
from testkit import hostile
from testkit.emulator import EmulatorClient
from testkit.process import wait_until

NEIGHBOURS = ("hang", "flood", "fragments", "creds", "auth401")


def config(interval: float, entries: list[str]) -> str:
    return "\n".join(
        [
            "environment: local",
            "sender:",
            f"  event_interval_seconds: {interval}",
            "  startup_wait_seconds: 10",
            "collector:",
            "  post_timeout_seconds: 2",
            "listener:",
            "  loss_timeout_seconds: 10",
            "datasets:",
            *entries,
            "",
        ]
    )


def run(neighbours: tuple[str, ...], interval: float, seconds: float, tmp: Path) -> dict:
    """One probe; the good dataset's latency over `seconds` of steady traffic after a warm-up."""
    datasets = (a for d in ("good", *neighbours) for a in ("--dataset", f"{d}/1"))
    entries = ["  - id: good"]
    with ExitStack() as peers, on_emulator(tmp, *datasets, PROBE_CONFIG=str(tmp / "probe.yaml")) as (emulator, stack):
        if neighbours:
            app_id = stack.app_id()  # the flood reads it off the dataset
            entries += [_entry(name, app_id, peers, emulator) for name in neighbours]
        (tmp / "probe.yaml").write_text(config(interval, entries))
        stack.start()
        wait_until(lambda: [e for e in stack.events() if e.dataset == "good" and e.latency], 60, "an arrival")
        time.sleep(3)  # warm-up: the neighbours get going
        listener = psutil.Process(stack.pid("listener"))
        cpu_before, since = sum(listener.cpu_times()[:2]), time.time()
        log_before = _warnings(tmp)
        time.sleep(seconds)
        until = time.time()
        cpu = (sum(listener.cpu_times()[:2]) - cpu_before) / (until - since)
        warnings = _warnings(tmp) - log_before
        good, truth = _good(stack, emulator, since, until)
    return (
        {"neighbours": list(neighbours)}
        | figures(good, truth)
        | {
            "listener_cpu_share": cpu,
            "warning_lines_per_minute": warnings * 60 / seconds,
        }
    )


def _good(stack: BenchStack, emulator: EmulatorClient, since: float, until: float) -> tuple[list, dict]:
    """The good dataset's events sent from `since` to a second before `until`, and its truth by seqno."""
    good = [e for e in stack.events() if e.dataset == "good" and since <= e.sent_at < until - 1]
    every = truth_of(emulator, stack.app_id(), lambda e: (e["dataset"], e["seqno"]))
    return good, {seqno: e for (dataset, seqno), e in every.items() if dataset == "good" and e["writes"]}


def figures(good: list[EventRow], truth: dict[int, dict]) -> dict:
    """The good dataset's latency, and its two sides, from its events and their truth."""
    latencies = [e.latency * 1000 for e in good if e.latency is not None]
    # Where the time goes: send to the emulator's acceptance (the sender), its websocket write to
    # the listener's receipt (the listener); the emulator's own delivery in between.
    send = [(truth[e.seqno]["accepted_at"] - e.sent_at) * 1000 for e in good if e.seqno in truth]
    receive = [
        (e.sent_at + e.latency - truth[e.seqno]["writes"][0]["at"]) * 1000
        for e in good
        if e.seqno in truth and e.latency is not None
    ]
    return {
        "events": len(good),
        "arrived": len(latencies),
        "p50_ms": measure.percentile(latencies, 50),
        "p99_ms": measure.percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "send_side_p50_ms": measure.percentile(send, 50),
        "send_side_p99_ms": measure.percentile(send, 99),
        "receive_side_p50_ms": measure.percentile(receive, 50),
        "receive_side_p99_ms": measure.percentile(receive, 99),
    }


def _entry(name: str, app_id: str, peers: ExitStack, emulator: EmulatorClient) -> str:
    """The configuration entry of one hostile neighbour, its peer started."""
    if name == "hang":
        emulator.faults("hang", collector_delay_ms=60_000)
        return "  - id: hang"
    if name == "flood":
        flood = peers.enter_context(hostile.serve(hostile.flooding(hostile.forged_events(app_id, "flood"))))
        return f'  - id: flood\n    websocket_url: "{flood.ws_url}"'
    if name == "fragments":
        fragments = peers.enter_context(hostile.serve(hostile.fragmenting(100_000_000, 60_000)))
        return f'  - id: fragments\n    websocket_url: "{fragments.ws_url}"'
    if name == "creds":
        return '  - id: creds\n    webhook_token: "00000000-0000-4000-8000-000000000000"'
    if name == "auth401":
        auth401 = peers.enter_context(hostile.serve(hostile.answering(401)))
        return (
            f'  - id: auth401\n    collector_url: "{auth401.http_url}/event-collector/event/{{dataset_id}}/{{version}}"'
        )
    raise ValueError(f"unknown neighbour {name!r}; known: {', '.join(NEIGHBOURS)}")


def _warnings(tmp: Path) -> int:
    log = tmp / "stack.log"
    if not log.exists():
        return 0
    with log.open(errors="replace") as lines:
        return sum(1 for line in lines if " WARNING " in line or " ERROR " in line)


def markdown(results: dict) -> str:
    alone, beside = results["alone"], results["neighbours"]
    ratio = beside["p99_ms"] / alone["p99_ms"] if alone["p99_ms"] else float("nan")
    rows = [
        f"Measured {results['when']} on {results['machine']} (`python -m bench.hostile`), "
        f"one event every {results['interval']} s per dataset, {results['seconds']:.0f} s each.",
        "",
        "| good dataset | events | latency p50 / p99 / max (ms) | send side p50 / p99 | receive side p50 / p99 "
        "| listener CPU (share of a core) | warning lines per minute |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in (("alone", alone), ("beside " + ", ".join(beside["neighbours"]), beside)):
        rows.append(
            f"| {name} | {r['arrived']} of {r['events']} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} "
            f"| {r['send_side_p50_ms']:.1f} / {r['send_side_p99_ms']:.1f} "
            f"| {r['receive_side_p50_ms']:.1f} / {r['receive_side_p99_ms']:.1f} "
            f"| {r['listener_cpu_share']:.2f} | {r['warning_lines_per_minute']:.0f} |"
        )
    rows += [
        "",
        f"p99 beside the neighbours / alone: **{ratio:.2f}x** (issue 22's target: within 2x). Send side: the "
        "event's send to the emulator's acceptance (the sender's share); receive side: the emulator's websocket "
        "write to the listener's receipt (the listener's share); the emulator's delivery lies between.",
    ]
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between events of each dataset")
    parser.add_argument("--seconds", type=float, default=40.0, help="steady traffic measured per run")
    parser.add_argument(
        "--neighbours",
        default=",".join(NEIGHBOURS),
        help=f"which hostile neighbours (default all: {','.join(NEIGHBOURS)})",
    )
    parser.add_argument("--out", default=str(output.RESULTS / "hostile"), help="output path without extension")
    args = parser.parse_args()
    results: dict = output.stamp() | {"interval": args.interval, "seconds": args.seconds}
    chosen = tuple(n for n in args.neighbours.split(",") if n)
    for name, neighbours in (("alone", ()), ("neighbours", chosen)):
        with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
            results[name] = run(neighbours, args.interval, args.seconds, Path(tmp))
        print(name, json.dumps(results[name]), flush=True)
    output.write(Path(args.out), results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
