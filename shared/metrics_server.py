"""The `metrics` program: serves the aggregated metrics of every probe process on one port.

Stateless by design: it defines no metrics of its own and re-reads the
multiprocess directory at every scrape, so restarting the sender or the listener
never takes the endpoint down. It also tidies up after dead processes, because an
eventlistener can miss an exit (BACKOFF events carry no pid; its buffer can fill).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shared import lifecycle
from shared.config import Config
from shared.store import Store

log = logging.getLogger("metrics")

LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")
SWEEP_EVERY = 1.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_pids(metrics_dir: str) -> set[int]:
    """Pids that left live-gauge files behind and no longer exist."""
    pids = set()
    for name in os.listdir(metrics_dir):
        match = LIVE_GAUGE_FILE.match(name)
        if match and not pid_alive(int(match.group(1))):
            pids.add(int(match.group(1)))
    return pids


def readiness(cfg: Config, store: Store, now: float) -> tuple[bool, str]:
    """Ready when the listener is subscribed and a post succeeded recently; else the reason."""
    fresh = cfg.ping_interval_seconds + cfg.pong_timeout_seconds + 2
    if store.subscribed_since(fresh, now) is None:
        return False, "listener is not subscribed"
    max_age = cfg.ready_max_post_age_seconds or 3 * cfg.event_interval_seconds + cfg.post_timeout_seconds
    last_ok, _ = store.last_post()
    if last_ok is None:
        return False, "no successful post yet"
    if now - last_ok > max_age:
        return False, f"last successful post {now - last_ok:.0f}s ago (limit {max_age:g}s)"
    return True, "ready"


def make_handler(cfg: Config, store: Store) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    swept = {"at": 0.0}
    sweep_lock = threading.Lock()

    def sweep() -> None:
        with sweep_lock:
            if time.monotonic() - swept["at"] < SWEEP_EVERY:
                return
            swept["at"] = time.monotonic()
            for pid in dead_pids(cfg.metrics_dir):
                mark_process_dead(pid, cfg.metrics_dir)
                log.info("dropped live gauges of dead pid %d", pid)

    class Handler(BaseHTTPRequestHandler):
        server_version = "dataplatform-probe"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/metrics", "/"):
                sweep()
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ready, reason = readiness(cfg, store, time.time())
                self._send(200 if ready else 503, reason.encode() + b"\n")
            else:
                self._send(404, b"not found; try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:  # scrapes are not log-worthy
            return

    return Handler


def main() -> int:
    cfg = lifecycle.start_process("metrics")
    Path(cfg.metrics_dir).mkdir(parents=True, exist_ok=True)
    store = Store(cfg.db_path)
    server = ThreadingHTTPServer((cfg.metrics_host, cfg.metrics_port), make_handler(cfg, store))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http")
    thread.start()
    log.info("serving /metrics, /healthz and /readyz on %s:%d", cfg.metrics_host, cfg.metrics_port)
    stop = threading.Event()
    lifecycle.wait_for_stop(stop, thread.is_alive)
    server.shutdown()
    thread.join()
    store.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
