"""The emulator in a test or a benchmark: started, its faults set, its truth read, over loopback HTTP.

It runs as a process of its own (`start_emulator`: the bench, and tests where the process is the
point; started by `emulator.launch`, as `probe run --with-emulator` starts it) or on an event loop
in a thread of the caller (`serve_emulator`: the same aiohttp application on a real loopback
socket, without an interpreter to start). Everything here talks to it as a person with curl
would; nothing reaches into its memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from testkit.process import ROOT, Proc, free_port


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


def start_emulator(tmp: Path, *flags: str, env: dict[str, str] | None = None) -> EmulatorClient:
    """A real emulator process on a free loopback port, with the contract's demo identity, up and answering.

    `env` (default: this process's) is its environment, a control token (EMULATOR_CONTROL_TOKEN) among it.
    """
    from emulator.launch import launch, wait_up

    port = free_port()
    log_path = tmp / f"emulator-{port}.log"
    with open(log_path, "ab") as log_file:
        proc = Proc(launch(port, flags, output=log_file.fileno(), env=env), log_path)
    if not wait_up(proc.popen, port):
        proc.stop()
        raise AssertionError("emulator did not start:\n" + proc.output())
    return EmulatorClient(port, proc)


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
