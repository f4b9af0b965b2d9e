"""The `metrics` program: serves the aggregated metrics of every probe process on one port.

Stateless by design: it defines no metrics of its own and re-reads the
multiprocess directory at every scrape, so restarting the sender or the listener
never takes the endpoint down. It also tidies up after dead processes, because an
eventlistener can miss an exit (BACKOFF events carry no pid; its buffer can fill).
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from probe_stack.metrics.address import local_host
from probe_stack.metrics.bounded_http import MAX_CONNECTIONS, WRITE_TIMEOUT, BoundedServer
from probe_stack.metrics.pages import Pages, wants_html
from probe_stack.metrics.status_page import CONTENT_TYPE as PAGE_TYPE
from probe_stack.metrics.status_page import HEADERS as PAGE_HEADERS
from probe_stack.metrics.sweep import SweepClock, dead_pids, remove_live_gauges
from probe_stack.verdict.figures import counters_by_dataset
from probe_stack.verdict.readiness import readiness
from shared import lifecycle
from shared.config import Config
from shared.exits import ExitStatus
from shared.store import Store

log = logging.getLogger("metrics")
ACCEPT_POLL = 5.0  # serve_forever: notices shutdown(), which stop_serving() hastens


def make_server(cfg: Config, store: Store, limit: int = MAX_CONNECTIONS) -> BoundedServer:
    return BoundedServer((cfg.metrics_host, cfg.metrics_port), make_handler(cfg, store), limit)


def make_handler(cfg: Config, store: Store) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from probe_stack.metrics.folding_collector import FoldingCollector

    registry = CollectorRegistry()
    FoldingCollector(registry, cfg.metrics_dir)
    clock = SweepClock()
    pages = Pages(cfg, lambda: counters_by_dataset(registry.collect()))

    def sweep() -> None:
        if not clock.due(time.monotonic()):
            return
        for pid in dead_pids(cfg.metrics_dir):
            remove_live_gauges(cfg.metrics_dir, pid)
            log.info("dropped live gauges of dead pid %d", pid)

    class Handler(BaseHTTPRequestHandler):
        server_version = "dataplatform-probe"
        timeout = WRITE_TIMEOUT  # the whole answer (sendall); the request was read by the watcher
        server: BoundedServer

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # the socket's reader: the head was read already, by the watcher
            self.rfile = io.BytesIO(self.server.take_head(self.request))

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/status" or (path == "/" and wants_html(self.headers.get("Accept"))):
                self._send(*pages.page(), PAGE_TYPE, PAGE_HEADERS)  # a browser: the status page
            elif path in ("/metrics", "/"):
                sweep()
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ready, reason = readiness(cfg, store, time.time())
                self._send(200 if ready else 503, reason.encode() + b"\n")
            else:
                self._send(404, b"not found; try /metrics, /status, /healthz or /readyz\n")

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain; charset=utf-8",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:  # scrapes are not log-worthy
            return

    return Handler


def stop_serving(server: BoundedServer) -> None:
    """shutdown() at once: it only takes effect when serve_forever wakes, so connect until it has."""
    host, port = server.server_address[:2]
    host = local_host(host)
    stopper = threading.Thread(target=server.shutdown, name="http-stop")
    stopper.start()
    while stopper.is_alive():
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=1).close()
        stopper.join(0.2)


def main() -> int:
    cfg = lifecycle.start_process("metrics")
    Path(cfg.metrics_dir).mkdir(parents=True, exist_ok=True)
    store = Store(cfg.db_path, create=False)
    server = make_server(cfg, store)
    # Accepting wakes on a connection; the poll only notices shutdown(), which stop_serving()
    # hastens with a connection of its own, so it need not be frequent.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": ACCEPT_POLL}, name="http")
    thread.start()
    log.info("serving /metrics, /status, /healthz and /readyz on %s:%d", cfg.metrics_host, cfg.metrics_port)
    stop = threading.Event()
    lifecycle.wait_for_stop(stop, thread.is_alive)
    stop_serving(server)
    thread.join()
    store.close()
    log.info("stopped")
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(main())
