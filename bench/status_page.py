"""`python -m bench.status_page`: how long the status page takes for 200 datasets.

A store with an hour of events of each dataset at the default 10 s interval (360 each, 72,000
in all; one in fifty lost, some failed posts, a reconnect each), then the page's two halves
timed apart: the snapshot (every query, through the read-only reader) and the render (HTML
and SVG from the snapshot, the part the 50 ms target is about). Medians and maxima of
several rounds; results in bench/results/status_page.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import output
from probe_stack.metrics.status_page import render
from probe_stack.verdict.figures import snapshot
from shared import config
from shared.store import Store, StoreReader


def build_store(path: Path, datasets: int, now: float) -> None:
    with Store(path) as store:
        app = store.app_id()
        for d in range(datasets):
            name = f"ds-{d:03d}"
            first = store.subscription_opened(name, now - 3700)
            store.subscription_closed(first, now - 1800)
            second = store.subscription_opened(name, now - 1795)
            store.subscription_alive(second, now)
            for i in range(360):
                sent = now - 3600 + i * 10
                seqno = store.record_send(app, name, "1", sent)
                store.record_post(app, name, seqno, i % 97 != 0, None if i % 97 else "http_5xx", sent + 0.05)
                if i % 50 and i % 97:
                    store.classify_arrival(app, name, seqno, sent + 0.2 + (i % 13) * 0.01)
        store.judge_overdue(now, {f"ds-{d:03d}": 30.0 for d in range(datasets)}, 30.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        path = Path(tmp) / "probe.sqlite3"
        names = "".join(f"  - id: ds-{d:03d}\n" for d in range(args.datasets))
        (Path(tmp) / "probe.yaml").write_text(f"environment: local\ndatasets:\n{names}")
        cfg = config.load(
            {"PROBE_CONFIG": str(Path(tmp) / "probe.yaml"), "ORIGO_ENVIRONMENT": "local", "PROBE_DB_PATH": str(path)}
        )
        now = time.time()
        started = time.monotonic()
        build_store(path, args.datasets, now)
        built = time.monotonic() - started
        reader = StoreReader(path, query_seconds=5.0)
        snaps, renders, cpu, size = [], [], [], 0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            snap = snapshot(cfg, reader, now, budget=60.0)
            t1, c1 = time.perf_counter(), time.process_time()
            body = render(snap)
            t2, c2 = time.perf_counter(), time.process_time()
            snaps.append(t1 - t0)
            renders.append(t2 - t1)
            cpu.append(c2 - c1)  # less swayed than the wall clock by the machine's other work
            size = len(body)
        assert snap.problem is None and len(snap.datasets) == args.datasets, snap.problem
        reader.close()
    result = {
        "datasets": args.datasets,
        "events": args.datasets * 360,
        "rounds": args.rounds,
        "store_build_s": round(built, 1),
        "render_ms_median": round(statistics.median(renders) * 1000, 1),
        "render_ms_max": round(max(renders) * 1000, 1),
        "render_cpu_ms_median": round(statistics.median(cpu) * 1000, 1),
        "snapshot_ms_median": round(statistics.median(snaps) * 1000, 1),
        "snapshot_ms_max": round(max(snaps) * 1000, 1),
        "page_kib": round(size / 1024),
    }
    output.RESULTS.mkdir(exist_ok=True)
    (output.RESULTS / "status_page.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
