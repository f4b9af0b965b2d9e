"""`probe health`: the container's HEALTHCHECK, asking the metrics program on the configured port.

The port comes from the configuration (METRICS_PORT, probe.yaml), not a fixed 8000, so the
check stays true when an operator moves the port. Standard library only: it runs every 30 s.
"""

from __future__ import annotations

import http.client
import sys

from probe_stack.metrics.address import metrics_address, url_host
from shared.config import Config
from shared.exits import ExitStatus

TIMEOUT_SECONDS = 4.0


def check(cfg: Config, path: str) -> int:
    """GET `path` (/healthz or /readyz); exit 0 on 200, 1 otherwise, with one line saying why."""
    host, port = metrics_address(cfg)
    where = f"http://{url_host(host)}:{port}{path}"
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read(4096).decode("utf-8", "replace").strip().splitlines()
        status = answer.status
    except OSError as exc:
        print(f"probe health: {where}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return ExitStatus.FATAL
    finally:
        conn.close()
    summary = body[0] if body else ""
    if status != 200:
        print(f"probe health: {where}: HTTP {status} {summary}", file=sys.stderr)
        return ExitStatus.FATAL
    print(f"{where}: {summary or 'ok'}")
    return ExitStatus.OK
