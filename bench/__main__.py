"""`make bench` / `python -m bench`: the probe's accuracy, capacity and cost, against the emulator's truth.

Results go to bench/results/latest.json and latest.md (the table in README.md).
Everything runs on loopback; each run is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import psutil
import requests
import websocket

from bench import measure
from bench.harness import PROGRAMS, BenchStack, RssSampler, pss_uss, tree_cpu, tree_roles
from probe_sender import wiring
from shared import config as config_mod
from shared import event as event_mod
from shared.config import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET
from shared.config import LOCAL_WEBHOOK_TOKEN as WEBHOOK_TOKEN
from shared.store import Store
from shared.tracing import NoTracer
from testkit.emulator import EmulatorClient, start_emulator
from testkit.process import wait_until

DATASET_ID = "probe-dataset"

RESULTS = Path(__file__).resolve().parent / "results"
FAULTS = {"delay_ms": 20, "drop_rate": 0.01, "duplicate_rate": 0.01, "seed": 1}


def run_rate(rate: float, duration: float, tmp: Path) -> dict:
    """One rate: steady traffic with drops and duplicates, then every event against the truth."""
    emulator = start_emulator(tmp)
    emulator.faults(**FAULTS)
    loss_timeout = 5.0
    stack = BenchStack.create(
        emulator,
        tmp,
        EVENT_INTERVAL_SECONDS=1 / rate,
        LOSS_TIMEOUT_SECONDS=loss_timeout,
        POST_TIMEOUT_SECONDS=2,
        POST_CONCURRENCY=32,
    )
    try:
        stack.start()
        sampler = RssSampler(stack.proc.popen.pid)
        sampler.start()
        wait_until(lambda: stack.events(), 30, "the first event")
        time.sleep(2)  # warm-up: imports, token, first connections
        procs = {name: psutil.Process(stack.pid(name)) for name in PROGRAMS}
        cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        seq_before = len(stack.events())
        time.sleep(duration)
        cpu_after = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        seq_after = len(stack.events())
        scrape = stack.scrape_ms()
        stack.stop_sender()
        stack.wait_judged(loss_timeout + 30)
        sampler.done.set()
        exposed = requests.get(stack.metrics_url, timeout=10).text
        rows = stack.events()
        app_id = stack.app_id()
        truth = {e["seqno"]: e for e in emulator.truth()["events"] if e["app_id"] == app_id}
        db = Path(stack.env["PROBE_DB_PATH"])
        db_bytes = db.stat().st_size
        wal = db.with_name(db.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
    finally:
        stack.stop()
        emulator.proc.stop()
    events = seq_after - seq_before
    sched = measure.schedule([r.sent_at for r in rows], 1 / rate)
    window = rows[seq_before:seq_after]  # the measured steady state, after the warm-up
    overhead = measure.overhead_ms({r.seqno: (r.sent_at, r.latency) for r in window if r.latency is not None}, truth)
    bad = measure.mismatches({r.seqno: (r.state, r.receive_count) for r in rows}, truth)
    skipped = {
        reason: sum(
            float(line.rsplit(" ", 1)[1])
            for line in exposed.splitlines()
            if line.startswith("probe_sender_skipped_slots") and f'reason="{reason}"' in line
        )
        for reason in ("stall", "backpressure")
    }
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
        "skipped_slots": skipped,
        "jitter_ms": {"p50": sched.jitter_p50_ms, "p99": sched.jitter_p99_ms, "max": sched.jitter_max_ms},
        "cpu_s_per_1000_events": {n: (cpu_after[n] - cpu_before[n]) * 1000 / max(events, 1) for n in PROGRAMS},
        "peak_rss_mb": sampler.peak / 2**20,
        "peak_pss_mb": sampler.peak_pss / 2**20,
        "sqlite_bytes": db_bytes,
        "sqlite_wal_bytes": wal_bytes,
        "scrape_ms": scrape,
    }


def run_datasets(count: int, interval: float, duration: float, tmp: Path) -> dict:
    """Many datasets in one probe (one schedule and one subscription each): exact accounting, CPU per
    event, and the tree's peak memory."""
    names = [f"bench-{i:02d}" for i in range(count)]
    emulator = start_emulator(tmp, *(a for n in names for a in ("--dataset", f"{n}/1")))
    emulator.faults(**FAULTS)
    config = tmp / "probe.yaml"
    config.write_text("environment: local\ndatasets:\n" + "".join(f"  - id: {n}\n" for n in names))
    loss_timeout = 5.0
    stack = BenchStack.create(
        emulator,
        tmp,
        PROBE_CONFIG=str(config),
        EVENT_INTERVAL_SECONDS=interval,
        LOSS_TIMEOUT_SECONDS=loss_timeout,
        POST_TIMEOUT_SECONDS=2,
    )
    try:
        stack.start()
        sampler = RssSampler(stack.proc.popen.pid)
        sampler.start()
        wait_until(lambda: len({e.dataset for e in stack.events()}) == count, 60, "an event of every dataset")
        time.sleep(2)
        root = psutil.Process(stack.proc.popen.pid)
        cpu_before, events_before = tree_cpu(root), len(stack.events())
        time.sleep(duration)
        cpu_after, events_after = tree_cpu(root), len(stack.events())
        stack.stop_sender()
        stack.wait_judged(loss_timeout + 30)
        sampler.done.set()
        rows = stack.events()
        app_id = stack.app_id()
        truth = {(e["dataset"], e["seqno"]): e for e in emulator.truth()["events"] if e["app_id"] == app_id}
    finally:
        stack.stop()
        emulator.proc.stop()
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


def run_tracing_memory(seconds: float, tmp: Path) -> dict:
    """Peak RSS of sender and listener at 10 ev/s with X-Ray tracing off, then on (a UDP sink as daemon)."""
    out = {}
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        for tracing in (False, True):
            run_tmp = tmp / ("on" if tracing else "off")
            run_tmp.mkdir()
            emulator = start_emulator(run_tmp)
            stack = BenchStack.create(
                emulator,
                run_tmp,
                EVENT_INTERVAL_SECONDS=0.1,
                AWS_XRAY_SDK_ENABLED=str(tracing).lower(),
                AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{sink.getsockname()[1]}",
            )
            try:
                stack.start()
                wait_until(lambda s=stack: s.events(), 30, "the first event")
                peaks = dict.fromkeys(("sender", "listener"), 0)
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    for name in peaks:
                        with contextlib.suppress(psutil.Error, OSError):
                            peaks[name] = max(peaks[name], psutil.Process(stack.pid(name)).memory_info().rss)
                    time.sleep(0.5)
            finally:
                stack.stop()
                emulator.proc.stop()
            out["on" if tracing else "off"] = {name: rss / 2**20 for name, rss in peaks.items()}
    finally:
        sink.close()
    return out


def run_footprint(interval: float, seconds: float, tmp: Path) -> dict:
    """What the stack costs a machine at one event every `interval` seconds, idle time included:
    the tree's start-up CPU (to its first received event), then per process its CPU seconds
    per hour over `seconds`, and its RSS, PSS and USS at the end."""
    emulator = start_emulator(tmp)
    stack = BenchStack.create(emulator, tmp, EVENT_INTERVAL_SECONDS=interval)
    try:
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
        per: dict[str, dict] = {}
        for role, proc in roles.items():
            pss, uss = pss_uss(proc.pid)
            per[role] = {
                "cpu_s_per_hour": (sum(proc.cpu_times()[:2]) - before[role]) * 3600 / elapsed,
                "rss_mb": proc.memory_info().rss / 2**20,
                "pss_mb": pss / 2**20,
                "uss_mb": uss / 2**20,
            }
    finally:
        stack.stop()
        emulator.proc.stop()
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


def run_restarts(kills: int, sender_restarts: int, tmp: Path) -> dict:
    """Time from SIGKILL of the listener to resubscribed; scrape time after many sender restarts."""
    emulator = start_emulator(tmp)
    stack = BenchStack.create(emulator, tmp, EVENT_INTERVAL_SECONDS=0.5)
    resubscribe = []
    try:
        stack.start()
        wait_until(lambda: emulator.subscribers() == 1, 30, "subscribed")
        for _ in range(kills):
            pid = stack.pid("listener")
            known = len(emulator.truth()["subscribers"])
            os.kill(pid, signal.SIGKILL)
            killed = time.time()
            subs = wait_until(lambda k=known: emulator.truth()["subscribers"][k:], 30, "resubscribed")
            resubscribe.append(subs[0]["connected_at"] - killed)
            wait_until(lambda p=pid: stack.pid("listener") not in (0, p), 30, "listener RUNNING again")
        scrape_before = stack.scrape_ms()
        metrics_dir = Path(stack.env["PROMETHEUS_MULTIPROC_DIR"])
        rpc = stack.rpc()
        for _ in range(sender_restarts):
            rpc.supervisor.stopProcess("sender", True)
            rpc.supervisor.startProcess("sender", False)
            wait_until(lambda: rpc.supervisor.getProcessInfo("sender")["pid"], 10, "sender spawned")
            pid = rpc.supervisor.getProcessInfo("sender")["pid"]
            wait_until(lambda p=pid: list(metrics_dir.glob(f"*_{p}.db")), 20, "the sender's metric files")
        files = len(list(metrics_dir.iterdir()))
        scrape_after = stack.scrape_ms()
    finally:
        stack.stop()
        emulator.proc.stop()
    return {
        "listener_kills": kills,
        "resubscribe_s": {"median": measure.percentile(resubscribe, 50), "max": max(resubscribe)},
        "sender_restarts": sender_restarts,
        "metric_files_after": files,
        "scrape_ms_before": scrape_before,
        "scrape_ms_after": scrape_after,
    }


def emulator_token(emulator: EmulatorClient) -> str:
    from keycloak import KeycloakOpenID

    return KeycloakOpenID(
        server_url=f"{emulator.base}/auth/",
        realm_name="api-catalog",
        client_id=LOCAL_CLIENT_ID,
        client_secret_key=LOCAL_CLIENT_SECRET,
    ).token(grant_type="client_credentials")["access_token"]


_FLOOR_KEY = bytes(32)  # the floor posts to the emulator only; no listener checks their seal


def _sealed(app_id: str, seqno: int) -> str:
    event = event_mod.build(app_id, DATASET_ID, seqno, time.time())
    event_mod.seal(event, _FLOOR_KEY)
    return json.dumps(event)


def _raw_post(sock: socket.socket, reader: BinaryIO, request: bytes) -> None:
    """One HTTP/1.1 request written as bytes, its answer read to the end of its body."""
    sock.sendall(request)
    length = 0
    if not reader.readline().startswith(b"HTTP/1.1 200"):
        raise RuntimeError("the emulator refused a floor post")
    while (line := reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    reader.read(length)


def run_floor(posts: int, tmp: Path) -> dict:
    """What the sender's fixed parts cost alone, on one thread with nothing else running.

    The probe's own collector (the sender's session, token and retry wiring) posts one sealed
    event at a time to the emulator, back to back and then 10 ms apart as at 100 ev/s (caches
    are colder then); the same bytes then go out on a raw socket; and the store runs its two
    transactions per event (record before send, then the outcome). CPU per event, and the time
    from the call to the emulator's acceptance: the sender cannot go below the collector's and
    the store's sum, and the overhead's send side not below the collector's time.
    """
    emulator = start_emulator(tmp)
    try:
        cfg = config_mod.load(emulator.env(tmp))
        collector = wiring.collector_for(
            cfg, cfg.datasets[0], wiring.token_provider(cfg, NoTracer()), wiring.session_for(cfg), NoTracer()
        )
        for seqno in range(50):  # warm-up: the token, the connection, the first allocations
            collector.post(json.loads(_sealed("warm-up", seqno)))
        post_ms, called = {}, {}
        for app_id, gap in (("floor-back-to-back", 0.0), ("floor-collector", 0.01)):
            events = [json.loads(_sealed(app_id, seqno)) for seqno in range(posts)]
            cpu = 0.0
            for seqno, event in enumerate(events):
                called[app_id, seqno], began = time.time(), time.thread_time()
                if not collector.post(event).ok:
                    raise RuntimeError("the emulator refused a floor post")
                cpu += time.thread_time() - began
                time.sleep(gap)
            post_ms[gap] = cpu * 1000 / posts
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = sock.makefile("rb")
            token = collector.tokens.get() if collector.tokens else ""
            path = urlsplit(collector.url).path
            for seqno in range(posts):
                body = _sealed("floor-raw", seqno).encode()
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                called["floor-raw", seqno] = time.time()
                _raw_post(sock, reader, head.encode() + body)
                time.sleep(0.01)
        to_acceptance: dict[str, list[float]] = {"floor-collector": [], "floor-raw": []}
        for event in emulator.truth()["events"]:
            if event["app_id"] in to_acceptance:
                at = event["accepted_at"] - called[event["app_id"], event["seqno"]]
                to_acceptance[event["app_id"]].append(at * 1000)
    finally:
        emulator.proc.stop()
    store = Store(tmp / "floor.sqlite3")
    try:
        began = time.thread_time()
        for _ in range(posts):
            seqno = store.record_send("floor", DATASET_ID, "1", time.time())
            store.record_post("floor", DATASET_ID, seqno, True, None, time.time())
        store_ms = (time.thread_time() - began) * 1000 / posts
    finally:
        store.close()
    return {
        "posts": posts,
        "post_cpu_ms": post_ms[0.0],
        "post_cpu_ms_10ms_apart": post_ms[0.01],
        "store_cpu_ms": store_ms,
        "to_acceptance_p50_ms": {
            "collector": measure.percentile(to_acceptance["floor-collector"], 50),
            "raw_socket": measure.percentile(to_acceptance["floor-raw"], 50),
        },
    }


# What each library costs the process that imports it, in the order a sender would meet them
# (a library's shared dependencies are counted with the first that brings them).
IMPORT_STEPS = (
    (
        "the standard library's TLS and HTTP (supervisord, metrics, sender and listener load them)",
        "import ssl, urllib.request",
    ),
    ("prometheus_client", "import prometheus_client"),
    ("PyYAML", "import yaml"),
    ("sqlite3", "import sqlite3"),
    ("requests", "import requests"),
    (
        "python-keycloak (its token decoding deferred, as the sender imports it)",
        "from shared.deferred_import import deferred\nwith deferred('jwcrypto', 'aiofiles'): import keycloak",
    ),
    ("websocket-client", "import websocket"),
    ("supervisor (supervisord's modules)", "import supervisor.supervisord"),
)

_IMPORT_COSTS = """
import json, sys
def rss():
    with open('/proc/self/smaps_rollup') as rollup:
        fields = {line.split()[0]: int(line.split()[1]) for line in rollup if line.rstrip().endswith('kB')}
    return fields['Rss:'] / 1024
costs = [rss()]
for statement in json.loads(sys.argv[1]):
    exec(statement)
    costs.append(rss())
print(json.dumps(costs))
"""


def run_import_costs() -> dict:
    """RSS (MB) of a fresh interpreter with its site packages, then what each library adds to it.

    RSS, not USS: a child's private pages depend on what else maps the same files (this
    process does), while what an import adds to a process's resident set does not."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_COSTS, json.dumps([statement for _, statement in IMPORT_STEPS])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    costs = json.loads(done.stdout)
    return {"interpreter": costs[0]} | {
        label: after - before for (label, _), before, after in zip(IMPORT_STEPS, costs[:-1], costs[1:], strict=True)
    }


def run_emulator_throughput(seconds: float, tmp: Path, batch: int = 100) -> dict:
    """Events per second the emulator accepts and delivers to one subscriber on loopback."""
    emulator = start_emulator(tmp)
    try:
        token = emulator_token(emulator)
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{emulator.port}/event-data-subscription?dataset_id={DATASET_ID}&webhook_token={WEBHOOK_TOKEN}"
        )
        received = {"n": 0, "last": 0.0}

        def read() -> None:
            ws.settimeout(3)
            try:
                while True:
                    ws.recv()
                    received["n"] += 1
                    received["last"] = time.monotonic()
            except (websocket.WebSocketException, OSError):
                return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        session = requests.Session()
        url = f"{emulator.base}/event-collector/events/{DATASET_ID}/1"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        sent, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            body = json.dumps([{"app_id": "bench", "seqno": sent + i, "time_sent": "t"} for i in range(batch)])
            session.post(url, data=body, headers=headers, timeout=10).raise_for_status()
            sent += batch
        posting = time.monotonic() - started
        reader.join(10)
        ws.close()
    finally:
        emulator.proc.stop()
    return {
        "accepted_per_s": sent / posting,
        "delivered": received["n"],
        "sent": sent,
        "delivered_per_s": received["n"] / max(received["last"] - started, 1e-9),
        "batch": batch,
    }


def markdown(results: dict) -> str:
    lines = [
        f"Measured {results['when']} on {results['machine']} (`make bench`).",
        "",
        "| rate (ev/s) | events | overhead p50 / p99 / max (ms) | mismatches | achieved rate | skipped (stall / busy) "
        "| jitter p50 / p99 (ms) "
        "| CPU s per 1000 ev (sender / listener / metrics) | peak RSS / PSS (MB) | SQLite + WAL (KB) | scrape (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rates"]:
        o, j, c = r["overhead_ms"], r["jitter_ms"], r["cpu_s_per_1000_events"]
        lines.append(
            f"| {r['rate']:g} | {r['events']} | {o['p50']:.2f} / {o['p99']:.2f} / {o['max']:.1f} | {r['mismatches']} "
            f"| {r['achieved_rate']:.2f}{'' if r['schedule_holds'] else ' (not held)'} "
            f"| {r['skipped_slots']['stall']:.0f} / {r['skipped_slots']['backpressure']:.0f} | {j['p50']:.2f} / "
            f"{j['p99']:.2f} | {c['sender']:.2f} / {c['listener']:.2f} / {c['metrics']:.2f} "
            f"| {r['peak_rss_mb']:.0f} / {r.get('peak_pss_mb', 0):.0f} "
            f"| {r['sqlite_bytes'] / 1024:.0f} + {r['sqlite_wal_bytes'] / 1024:.0f} "
            f"| {r['scrape_ms']:.1f} |"
        )
    lines.append("")
    lines.append(
        "Overhead p50 by side (ms), send time to the emulator's acceptance / its websocket write to receipt: "
        + ", ".join(
            f"{r['rate']:g} ev/s {r['overhead_ms']['send_side_p50']:.2f} / {r['overhead_ms']['receive_side_p50']:.2f}"
            for r in results["rates"]
            if "send_side_p50" in r["overhead_ms"]
        )
        + "."
    )
    lines.append(
        "Capacity (achieved rate within 1% of the target, skipped slots included; exact accounting): "
        f"**{results['capacity']} ev/s** (highest tested rate that met both)."
    )
    if "tracing_rss_mb" in results:
        t = results["tracing_rss_mb"]
        lines.append(
            "Peak RSS at 10 ev/s, X-Ray tracing off / on: "
            f"sender {t['off']['sender']:.0f} / {t['on']['sender']:.0f} MB, "
            f"listener {t['off']['listener']:.0f} / {t['on']['listener']:.0f} MB."
        )
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
    if "restarts" in results:
        r = results["restarts"]
        lines.append(
            f"Listener SIGKILL to resubscribed: median {r['resubscribe_s']['median']:.2f} s, "
            f"max {r['resubscribe_s']['max']:.2f} s over {r['listener_kills']} kills. "
            f"`/metrics` scrape: {r['scrape_ms_before']:.1f} ms before, {r['scrape_ms_after']:.1f} ms after "
            f"{r['sender_restarts']} sender restarts ({r['metric_files_after']} files in the metrics directory)."
        )
    if "datasets" in results:
        d = results["datasets"]
        lines.append(
            f"{d['datasets']} datasets at {1 / d['interval_s']:g} ev/s each: {d['events']} events, "
            f"{d['mismatches']} mismatches, achieved {d['achieved_rate']:.1f} of {d['target_rate']:g} ev/s, "
            f"tree CPU {d['tree_cpu_ms_per_event']:.2f} ms per event, peak RSS {d['peak_rss_mb']:.0f} MB "
            f"(PSS {d['peak_pss_mb']:.0f} MB)."
        )
    if "import_costs_mb" in results:
        costs = results["import_costs_mb"]
        lines.append(
            f"RSS of a fresh interpreter: {costs['interpreter']:.1f} MB; what each library adds to it, imported in "
            "this order: "
            + ", ".join(f"{label} {mb:+.1f}" for label, mb in costs.items() if label != "interpreter")
            + " MB."
        )
    if "floor" in results:
        f = results["floor"]
        lines.append(
            f"The sender's floor, alone on one thread: the probe's collector posting one event to the emulator, "
            f"{f['post_cpu_ms']:.2f} ms CPU back to back, {f['post_cpu_ms_10ms_apart']:.2f} ms when 10 ms apart "
            f"(as at 100 ev/s); the store's two transactions per event {f['store_cpu_ms']:.2f} ms "
            f"(over {f['posts']} each). From the call to the emulator's acceptance, 10 ms apart, p50: "
            f"{f['to_acceptance_p50_ms']['collector']:.2f} ms through the collector, "
            f"{f['to_acceptance_p50_ms']['raw_socket']:.2f} ms for the same bytes on a raw socket."
        )
    if "emulator" in results:
        e = results["emulator"]
        lines.append(
            f"Emulator: accepted {e['accepted_per_s']:.0f} ev/s, delivered {e['delivered']} of {e['sent']} "
            f"to one subscriber ({e['delivered_per_s']:.0f} ev/s), batches of {e['batch']}."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rates", default="1,10,100,500,1000", help="events per second, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of steady traffic per rate")
    parser.add_argument(
        "--tracing-seconds", type=float, default=15.0, help="peak memory with tracing off and on (0 skips it)"
    )
    parser.add_argument(
        "--footprint-seconds", type=float, default=120.0, help="CPU and memory at 10 s and 1 s intervals (0 skips)"
    )
    parser.add_argument("--kills", type=int, default=5, help="listener SIGKILLs to time (0 skips restarts)")
    parser.add_argument("--sender-restarts", type=int, default=100, help="sender restarts before the scrape timing")
    parser.add_argument("--emulator-seconds", type=float, default=10.0, help="emulator throughput run (0 skips)")
    parser.add_argument("--datasets", type=int, default=50, help="datasets at 1 ev/s each in one probe (0 skips)")
    parser.add_argument("--datasets-seconds", type=float, default=30.0, help="steady traffic of the datasets run")
    parser.add_argument(
        "--floor-posts", type=int, default=1000, help="posts and store rounds of the sender's floor (0 skips)"
    )
    parser.add_argument("--out", default=str(RESULTS / "latest"), help="output path without extension")
    args = parser.parse_args()
    results: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
        "faults": FAULTS,
        "rates": [],
    }
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for rate in [float(r) for r in args.rates.split(",")]:
            run_tmp = tmp / f"rate-{rate:g}"
            run_tmp.mkdir()
            result = run_rate(rate, args.duration, run_tmp)
            print(json.dumps(result), flush=True)
            results["rates"].append(result)
        held = [r["rate"] for r in results["rates"] if r["schedule_holds"] and r["mismatches"] == 0]
        results["capacity"] = max(held, default=0)
        if args.tracing_seconds > 0:
            (tmp / "tracing").mkdir()
            results["tracing_rss_mb"] = run_tracing_memory(args.tracing_seconds, tmp / "tracing")
            print(json.dumps(results["tracing_rss_mb"]), flush=True)
        if args.footprint_seconds > 0:
            results["footprint"] = []
            for interval in (10.0, 1.0):
                (tmp / f"footprint-{interval:g}").mkdir()
                result = run_footprint(interval, args.footprint_seconds, tmp / f"footprint-{interval:g}")
                print(json.dumps(result), flush=True)
                results["footprint"].append(result)
        if args.kills > 0:
            (tmp / "restarts").mkdir()
            results["restarts"] = run_restarts(args.kills, args.sender_restarts, tmp / "restarts")
            print(json.dumps(results["restarts"]), flush=True)
        if args.datasets > 0:
            (tmp / "datasets").mkdir()
            results["datasets"] = run_datasets(args.datasets, 1.0, args.datasets_seconds, tmp / "datasets")
            print(json.dumps(results["datasets"]), flush=True)
        results["import_costs_mb"] = run_import_costs()
        print(json.dumps(results["import_costs_mb"]), flush=True)
        if args.floor_posts > 0:
            (tmp / "floor").mkdir()
            results["floor"] = run_floor(args.floor_posts, tmp / "floor")
            print(json.dumps(results["floor"]), flush=True)
        if args.emulator_seconds > 0:
            (tmp / "emulator").mkdir()
            results["emulator"] = run_emulator_throughput(args.emulator_seconds, tmp / "emulator")
            print(json.dumps(results["emulator"]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
