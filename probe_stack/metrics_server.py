"""The `metrics` program: serves the aggregated metrics of every probe process on one port.

Stateless by design: it defines no metrics of its own and re-reads the
multiprocess directory at every scrape, so restarting the sender or the listener
never takes the endpoint down. It also tidies up after dead processes, because an
eventlistener can miss an exit (BACKOFF events carry no pid; its buffer can fill).
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from probe_stack.readiness import readiness
from probe_stack.sweep import SweepClock, dead_pids
from shared import lifecycle
from shared.config import Config
from shared.exits import ExitStatus
from shared.store import Store

log = logging.getLogger("metrics")


def make_handler(cfg: Config, store: Store) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    clock = SweepClock()

    def sweep() -> None:
        if not clock.due(time.monotonic()):
            return
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
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(main())
