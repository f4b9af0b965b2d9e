"""What `make soak` makes of its samples: each figure's trend, the limits it holds them to, the
curves as a PNG and the report in Markdown."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import soak_judge
from bench.harness import PROGRAMS

MEMORY_LIMIT = 0.05  # each program's fitted memory moves at most this share over the second half
SCRAPE_LIMIT = 1.5  # the scrape at the end at most this many times the one at the half-way point
METRIC_FILES_LIMIT = 48  # files in the metrics directory, whatever the count of restarts
Rows = list[dict[str, float]]


def write_csv(rows: Rows, path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> Rows:
    with path.open() as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _series(rows: Rows, key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["events"], r[key]) for r in rows if r[key] == r[key]]  # NaN: killed at that moment
    return [p[0] for p in pairs], [p[1] for p in pairs]


def failures(rows: Rows, mismatches: int) -> list[str]:
    """Each limit the run broke, in words."""
    out = []
    # Memory is judged on RSS. PSS is sampled and drawn but not judged: it divides shared library
    # pages among every process on the machine that maps them, so it moves when other programs
    # start or stop (an hour on a shared machine saw all three programs' PSS jump 1.3 MB at
    # one moment while their RSS held within 0.3 %). A leak in the probe grows its RSS.
    for name in PROGRAMS:
        change = soak_judge.window_change(_series(rows, f"{name}_rss_mb")[1])
        if abs(change) > MEMORY_LIMIT:
            out.append(f"{name} rss_mb moved {change:+.1%} from the half-way point to the end")
    bound = max(r["store_kb"] + r["wal_kb"] for r in rows[: len(rows) // 2])
    size = rows[-1]["store_kb"] + rows[-1]["wal_kb"]
    if size > bound * 1.1:
        out.append(f"store + WAL {size:.0f} KB at the end, above the first half's {bound:.0f}")
    files = max(r["metric_files"] for r in rows)
    if files > METRIC_FILES_LIMIT:
        out.append(f"{files:.0f} files in the metrics directory")
    scrape = soak_judge.window_change(_series(rows, "scrape_ms")[1])
    if scrape > SCRAPE_LIMIT - 1:
        out.append(f"scrape time moved {scrape:+.0%} from the half-way point to the end")
    if mismatches:
        out.append(f"{mismatches} events differ from the truth")
    return out


def report(rows: Rows, checked: int, bad: list[str], kills: dict, hours: float, rate: float) -> dict:
    """Every figure's trend, and the limits it is held to."""
    keys = [k for k in rows[0] if k not in ("t", "events")]
    trends = {k: soak_judge.trend(*_series(rows, k)) for k in keys}
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
        "failures": failures(rows, len(bad)),
    }


PANELS: list[tuple[str, Callable[[str], bool]]] = [
    ("RSS (MB)", lambda k: k.endswith("_rss_mb")),
    ("threads / fds", lambda k: k.endswith(("_threads", "_fds"))),
    ("store, WAL, exposition (KB)", lambda k: k in ("store_kb", "wal_kb", "exposition_kb")),
    ("metric files", lambda k: k == "metric_files"),
    ("scrape, judge round (ms)", lambda k: k in ("scrape_ms", "judge_round_ms")),
    ("CPU ms per event", lambda k: k == "cpu_ms_per_event"),
]


def draw(rows: Rows, path: Path) -> bool:
    """The curves as a PNG; False when matplotlib is missing (a dev dependency)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(9, 2.2 * len(PANELS)), sharex=True)
    for ax, (title, wanted) in zip(axes, PANELS, strict=True):
        for key in [k for k in rows[0] if wanted(k)]:
            ax.plot(*_series(rows, key), label=key, linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("events")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return True


def _load_line(load: dict | None) -> list[str]:
    """The machine's load while it ran: on a shared machine the CPU and timing figures carry it."""
    if not load:
        return []
    return [
        f"Machine load (1-minute average) during the run: mean {load['mean']:.1f}, max {load['max']:.1f} "
        f"on {load['cpus']} CPUs."
    ]


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
    failed = result["failures"]
    lines += ["", "Verdict: " + ("**fail**: " + "; ".join(failed) if failed else "**pass**")]
    if png:
        lines += ["", "![soak curves](soak.png)"]
    return "\n".join(lines) + "\n"
