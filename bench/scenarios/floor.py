"""What the sender's fixed parts cost alone, on one thread with nothing else running.

The probe's own collector (the sender's session, token and retry wiring) posts one sealed
event at a time to the emulator, back to back and then 10 ms apart as at 100 ev/s (caches
are colder then); the same bytes then go out on a raw socket; and the store runs its two
transactions per event (record before send, then the outcome). CPU per event, and the time
from the call to the emulator's acceptance: the sender cannot go below the collector's and
the store's sum, and the overhead's send side not below the collector's time.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from bench import measure
from bench.skeleton import DATASET_ID, Results, Scenario, emulator_only
from probe_sender import wiring
from shared import config as config_mod
from shared import event as event_mod
from shared.store import Store
from shared.tracing import NoTracer

_FLOOR_KEY = bytes(32)  # the floor posts to the emulator only; no listener checks their seal
Called = dict[tuple[str, int], float]  # (app_id, seqno) -> when the post was called


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--floor-posts", type=int, default=1000, help="posts and store rounds of the sender's floor (0 skips)"
    )


def run(args: argparse.Namespace, tmp: Path) -> Results:
    if args.floor_posts <= 0:
        return {}
    return {"floor": run_floor(args.floor_posts, tmp)}


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


def _through_collector(collector: Any, posts: int, called: Called) -> dict[float, float]:
    """CPU ms per post through the probe's collector, back to back (gap 0) and 10 ms apart."""
    for seqno in range(50):  # warm-up: the token, the connection, the first allocations
        collector.post(json.loads(_sealed("warm-up", seqno)))
    post_ms = {}
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
    return post_ms


def _on_raw_socket(port: int, collector: Any, posts: int, called: Called) -> None:
    """The same bytes on a socket of its own, 10 ms apart."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
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


def _store_ms(path: Path, posts: int) -> float:
    """CPU ms of the store's two transactions per event."""
    with Store(path) as store:
        began = time.thread_time()
        for _ in range(posts):
            seqno = store.record_send("floor", DATASET_ID, "1", time.time())
            store.record_post("floor", DATASET_ID, seqno, True, None, time.time())
        return (time.thread_time() - began) * 1000 / posts


def run_floor(posts: int, tmp: Path) -> dict:
    called: Called = {}
    with emulator_only(tmp) as emulator:
        cfg = config_mod.load(emulator.env(tmp))
        collector = wiring.collector_for(
            cfg, cfg.datasets[0], wiring.token_provider(cfg, NoTracer()), wiring.session_for(cfg), NoTracer()
        )
        post_ms = _through_collector(collector, posts, called)
        _on_raw_socket(emulator.port, collector, posts, called)
        to_acceptance: dict[str, list[float]] = {"floor-collector": [], "floor-raw": []}
        for event in emulator.truth()["events"]:
            if event["app_id"] in to_acceptance:
                at = event["accepted_at"] - called[event["app_id"], event["seqno"]]
                to_acceptance[event["app_id"]].append(at * 1000)
    return {
        "posts": posts,
        "post_cpu_ms": post_ms[0.0],
        "post_cpu_ms_10ms_apart": post_ms[0.01],
        "store_cpu_ms": _store_ms(tmp / "floor.sqlite3", posts),
        "to_acceptance_p50_ms": {
            "collector": measure.percentile(to_acceptance["floor-collector"], 50),
            "raw_socket": measure.percentile(to_acceptance["floor-raw"], 50),
        },
    }


def report(results: Results) -> list[str]:
    if "floor" not in results:
        return []
    f = results["floor"]
    return [
        f"The sender's floor, alone on one thread: the probe's collector posting one event to the emulator, "
        f"{f['post_cpu_ms']:.2f} ms CPU back to back, {f['post_cpu_ms_10ms_apart']:.2f} ms when 10 ms apart "
        f"(as at 100 ev/s); the store's two transactions per event {f['store_cpu_ms']:.2f} ms "
        f"(over {f['posts']} each). From the call to the emulator's acceptance, 10 ms apart, p50: "
        f"{f['to_acceptance_p50_ms']['collector']:.2f} ms through the collector, "
        f"{f['to_acceptance_p50_ms']['raw_socket']:.2f} ms for the same bytes on a raw socket."
    ]


SCENARIO = Scenario("floor", options, run, report)
