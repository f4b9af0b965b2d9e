"""Running the real supervised stack against the emulator for a benchmark, and watching its cost."""

from __future__ import annotations

import configparser
import contextlib
import signal
import tempfile
import threading
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from supervisor.xmlrpc import SupervisorTransport

from tests.helpers import Emulator, Proc, free_port, probe_cmd, start, store_in_flight, wait_until

PROGRAMS = ("sender", "listener", "metrics")


class RssSampler(threading.Thread):
    """Peak resident memory of a process tree, sampled twice a second."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.root))
            self.done.wait(0.5)


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited meanwhile
            total += proc.memory_info().rss
    return total


def tree_cpu(root: psutil.Process) -> float:
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


@dataclass
class BenchStack:
    emulator: Emulator
    tmp: Path
    env: dict[str, str]
    run_dir: str
    proc: Proc | None = None

    @classmethod
    def create(cls, emulator: Emulator, tmp: Path, **settings: object) -> BenchStack:
        run_dir = tempfile.mkdtemp(prefix="pb-")
        env = emulator.env(
            tmp, PROBE_RUN_DIR=run_dir, METRICS_PORT=free_port(), METRICS_HOST="127.0.0.1",
            STARTUP_WAIT_SECONDS=10, LOG_LEVEL="WARNING", **settings,
        )  # fmt: skip
        return cls(emulator, tmp, env, run_dir)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['METRICS_PORT']}/metrics"

    def start(self) -> None:
        self.proc = start(probe_cmd("run"), self.tmp / "stack.log", env=self.env)
        wait_until(lambda: requests.get(self.metrics_url, timeout=2).ok, 30, "the metrics endpoint")
        wait_until(lambda: all(self.pid(p) for p in PROGRAMS), 30, "every program running")

    def rpc(self) -> xmlrpc.client.ServerProxy:
        conf = configparser.ConfigParser()
        conf.read(Path(self.run_dir) / "supervisorctl.conf")
        section = conf["supervisorctl"]
        transport = SupervisorTransport(section["username"], section["password"], section["serverurl"])
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def pid(self, program: str) -> int:
        info = self.rpc().supervisor.getProcessInfo(program)
        return int(info["pid"]) if info["statename"] == "RUNNING" else 0

    def stop_sender(self) -> None:
        self.rpc().supervisor.stopProcess("sender", True)

    def wait_judged(self, timeout: float) -> None:
        wait_until(lambda: store_in_flight(self.env) == 0, timeout, "every event judged", interval=0.25)

    def scrape_ms(self, count: int = 20) -> float:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            requests.get(self.metrics_url, timeout=10).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        return times[len(times) // 2]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout=60)
