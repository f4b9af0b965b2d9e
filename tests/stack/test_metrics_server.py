"""The metrics endpoint under a flood of idle connections: bounded, and scrapes keep working."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from probe_stack import metrics_server
from shared import config
from shared.store import Store
from tests.helpers import ROOT, free_port, wait_until


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    monkeypatch.setattr(metrics_server, "IDLE_TIMEOUT", 1.0)
    port = free_port()
    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    with Store(tmp_path / "probe.sqlite3") as store:
        srv = metrics_server.make_server(config.load(env), store, limit=8)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{port}"
        srv.shutdown()
        srv.server_close()


def test_idle_connections_are_bounded_and_dropped_so_scrapes_keep_working(server: str) -> None:
    assert requests.get(f"{server}/healthz", timeout=2).text == "ok\n"
    port = int(server.rsplit(":", 1)[1])
    before = threading.active_count()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        assert threading.active_count() - before <= 8  # one handler thread per slot, however many wait

        def scrape_works() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{server}/metrics", timeout=2).status_code == 200
            return False

        wait_until(scrape_works, 5, "a scrape to get through while 300 idle connections stay open")
        newest = idle[-1]
        newest.settimeout(10)
        assert newest.recv(1) == b""  # closed by the server once idle for IDLE_TIMEOUT
    finally:
        for conn in idle:
            conn.close()
