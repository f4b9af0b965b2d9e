"""Where a bench run's results go: a JSON file and its Markdown beside it, stamped with when and
on what machine (figures from a busy 2-core machine and a quiet 16-core one do not compare)."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def stamp() -> dict[str, str]:
    """When, and on what machine."""
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
    }


def write(out: Path, results: dict, markdown: str) -> None:
    """`out`.json and `out`.md (`out` without its extension); the Markdown printed too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
