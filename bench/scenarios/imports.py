"""What each library costs the process that imports it, in the order a sender would meet them (a
library's shared dependencies are counted with the first that brings them)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.skeleton import Results, Scenario, no_options

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


def run(_: argparse.Namespace, __: Path) -> Results:
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
    steps = zip(IMPORT_STEPS, costs[:-1], costs[1:], strict=True)
    added = {label: after - before for (label, _), before, after in steps}
    return {"import_costs_mb": {"interpreter": costs[0]} | added}


def report(results: Results) -> list[str]:
    if "import_costs_mb" not in results:
        return []
    costs = results["import_costs_mb"]
    return [
        f"RSS of a fresh interpreter: {costs['interpreter']:.1f} MB; what each library adds to it, imported in "
        "this order: "
        + ", ".join(f"{label} {mb:+.1f}" for label, mb in costs.items() if label != "interpreter")
        + " MB."
    ]


SCENARIO = Scenario("imports", no_options, run, report)
