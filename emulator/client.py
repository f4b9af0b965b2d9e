"""Driving a real emulator from tests and the bench: start it, set faults, read the truth.

The emulator runs as a process of its own (`start_emulator`: the bench, and tests where the
process is the point) or on an event loop in a thread of the caller (`serve_emulator`: the
same aiohttp application on a real loopback socket, without an interpreter to start).
Everything here talks to it over loopback HTTP, as a person with curl would; nothing reaches
into its memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; fail with `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may not be checkable yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


@dataclass
class Proc:
    """A child process whose output goes to a file that can be shown on failure."""

    popen: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def start(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
    log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    popen = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log_file.close()
    return Proc(popen, log_path)


@dataclass
class InThread:
    """An emulator served by its own event loop on a thread of this process; stopped like a Proc."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    runner: Any  # aiohttp.web.AppRunner

    def output(self) -> str:
        return "(the emulator ran in the test process: its log lines are in the captured log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Stop serving (requests in progress get the same short grace as the process's SIGTERM)."""
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            self.loop.close()
        return 0


@dataclass
class EmulatorClient:
    port: int
    proc: Proc | InThread
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        from emulator.options import CONTROL_TOKEN_ENV

        # An emulator started with a control token (inherited from this environment) needs it.
        token = os.environ.get(CONTROL_TOKEN_ENV)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def faults(self, dataset: str | None = None, **changes: Any) -> dict:
        """Change the faults of every dataset, or of `dataset` only."""
        params = {"dataset": dataset} if dataset else None
        r = self.session.put(f"{self.base}/_emulator/faults", json=changes, params=params, timeout=5)
        r.raise_for_status()
        return r.json()

    def truth(self) -> dict:
        r = self.session.get(f"{self.base}/_emulator/truth", timeout=30)
        r.raise_for_status()
        return r.json()

    def close_all(self, code: int = 1001) -> int:
        return self.session.post(f"{self.base}/_emulator/close", json={"code": code}, timeout=5).json()["closed"]

    def inject(self, **body: Any) -> int:
        return self.session.post(f"{self.base}/_emulator/inject", json=body, timeout=5).json()["sent"]

    def subscribers(self) -> int:
        return self.session.get(f"{self.base}/_emulator/health", timeout=5).json()["subscribers"]

    def env(self, tmp: Path, **overrides: Any) -> dict[str, str]:
        """Environment for a probe process pointed at this emulator, with its own store and metrics dir."""
        from shared.config import FIELDS

        # A developer's own settings must not leak into a probe started here.
        names = {f.env for f in FIELDS} | {f.file_env for f in FIELDS}
        env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("PROBE_")}
        env.update(
            PROBE_CONFIG=str(ROOT / "probe.yaml"),
            ORIGO_ENVIRONMENT="local",
            KEYCLOAK_SERVER=f"{self.base}/auth",
            COLLECTOR_URL=f"{self.base}/event-collector/event/{{dataset_id}}/{{version}}",
            WEBSOCKET_URL=f"ws://127.0.0.1:{self.port}/event-data-subscription",
            PROBE_DB_PATH=str(tmp / "probe.sqlite3"),
            PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
            PYTHONUNBUFFERED="1",
            STARTUP_WAIT_SECONDS="0",
        )
        env.update({k: str(v) for k, v in overrides.items()})
        return env


def start_emulator(tmp: Path, *extra: str) -> EmulatorClient:
    """A real emulator process on a free loopback port, up and answering."""
    port = free_port()
    proc = start(
        [PYTHON, "-m", "emulator", "--port", str(port), *extra], tmp / f"emulator-{port}.log", env=os.environ.copy()
    )
    emulator = EmulatorClient(port, proc)
    try:
        wait_until(lambda: emulator.session.get(f"{emulator.base}/_emulator/health", timeout=1).ok, 20, "emulator up")
    except AssertionError:
        proc.stop()
        raise AssertionError("emulator did not start:\n" + proc.output()) from None
    return emulator


def serve_emulator(*flags: str) -> EmulatorClient:
    """The emulator `probe emulator FLAGS` would run, served on a free loopback port by a thread of this process."""
    from aiohttp import web

    from emulator.options import build, parser
    from emulator.server import SHUTDOWN_SECONDS

    app = build(parser("serve_emulator").parse_args(list(flags))).app()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)

    async def bind() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)  # the kernel picks the port: no race for a free one
        await site.start()
        return runner.addresses[0][1]

    thread = threading.Thread(target=loop.run_forever, name="emulator", daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(bind(), loop).result(30)
    return EmulatorClient(port, InThread(loop, thread, runner))


def implied_state(event: dict | None) -> tuple[str, int]:
    """(state, receive count) the truth implies for an event, if the listener never looked away.

    `event` is the truth's record of the event, or None when the collector never accepted it.
    """
    if event is None:
        return "post_failed", 0
    if event["fate"] in ("dropped", "held"):
        return "lost", 0
    return "received", len(event["writes"])
