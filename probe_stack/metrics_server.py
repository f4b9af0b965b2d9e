"""The `metrics` program: serves the aggregated metrics of every probe process on one port.

Stateless by design: it defines no metrics of its own and re-reads the
multiprocess directory at every scrape, so restarting the sender or the listener
never takes the endpoint down. It also tidies up after dead processes, because an
eventlistener can miss an exit (BACKOFF events carry no pid; its buffer can fill).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from probe_stack.healthcheck import local_host
from probe_stack.readiness import readiness
from probe_stack.status_data import counters_by_dataset
from probe_stack.status_page import CONTENT_TYPE as PAGE_TYPE
from probe_stack.status_page import HEADERS as PAGE_HEADERS
from probe_stack.status_page import Pages, wants_html
from probe_stack.sweep import SweepClock, dead_pids, remove_live_gauges
from shared import lifecycle
from shared.config import Config
from shared.exits import ExitStatus
from shared.store import Store

log = logging.getLogger("metrics")

# A scrape is one short request, sent as soon as the connection opens. Connections
# wait without a thread until they have something to read; one that sends nothing for
# IDLE_TIMEOUT is closed, as is the oldest waiting one when MAX_WAITING wait. At most
# MAX_CONNECTIONS are served at once. So a flood of idle connections costs neither
# threads nor unbounded file descriptors, and scrapes keep getting through.
IDLE_TIMEOUT = 5.0
MAX_CONNECTIONS = 32
MAX_WAITING = 256
ACCEPT_POLL = 5.0


class BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that gives a connection a thread only once it has sent something."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(limit)
        self._arrivals: queue.SimpleQueue[tuple[socket.socket, tuple[str, int]]] = queue.SimpleQueue()
        self._waiting: dict[socket.socket, tuple[float, tuple[str, int]]] = {}
        self._selector = selectors.DefaultSelector()
        # A new connection wakes the watcher at once (a scrape must not wait for a poll).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="http-wait", daemon=True)
        self._watcher.start()

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        self._arrivals.put((request, client_address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def server_close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._watcher.join(2)
        super().server_close()

    def _drop(self, sock: socket.socket) -> None:
        self._waiting.pop(sock, None)
        self._selector.unregister(sock)
        self.shutdown_request(sock)

    def _watch(self) -> None:
        """Move connections that have data to a handler thread; close those idle too long."""
        while not self._closed.is_set():
            while not self._arrivals.empty():
                sock, address = self._arrivals.get()
                if len(self._waiting) >= MAX_WAITING:
                    self._drop(min(self._waiting, key=lambda s: self._waiting[s][0]))
                self._waiting[sock] = (time.monotonic() + IDLE_TIMEOUT, address)
                self._selector.register(sock, selectors.EVENT_READ)
            # No poll: new connections and close() wake the selector through the socketpair, so
            # it waits only for the earliest idle deadline of a connection, or for ever.
            deadlines = [deadline for deadline, _ in self._waiting.values()]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, _ in self._selector.select(timeout=timeout):
                sock = key.fileobj
                if sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                _, address = self._waiting.pop(sock)
                self._selector.unregister(sock)
                if self._slots.acquire(blocking=False):
                    threading.Thread(target=self._serve, args=(sock, address), daemon=True).start()
                else:
                    self.shutdown_request(sock)
            now = time.monotonic()
            for sock in [s for s, (deadline, _) in self._waiting.items() if deadline < now]:
                self._drop(sock)

    def _serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        try:
            self.finish_request(sock, address)
        except Exception:
            self.handle_error(sock, address)
        finally:
            self.shutdown_request(sock)
            self._slots.release()


def make_server(cfg: Config, store: Store, limit: int = MAX_CONNECTIONS) -> BoundedServer:
    return BoundedServer((cfg.metrics_host, cfg.metrics_port), make_handler(cfg, store), limit)


def make_handler(cfg: Config, store: Store) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from probe_stack.multiproc_cache import DeadFilesCachedCollector

    registry = CollectorRegistry()
    DeadFilesCachedCollector(registry, cfg.metrics_dir)
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
        timeout = IDLE_TIMEOUT

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
