"""Running the real supervised stack against the emulator for a benchmark, and watching its cost."""

from __future__ import annotations

import configparser
import contextlib
import signal
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests
from supervisor.xmlrpc import SupervisorTransport

from emulator.client import PYTHON, EmulatorClient, Proc, free_port, start, wait_until
from shared.store import Store

PROGRAMS = ("sender", "listener", "metrics")


class RssSampler(threading.Thread):
    """Peak resident memory (RSS, and PSS) of a process tree, sampled twice a second."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peak = 0
        self.peak_pss = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.root))
            self.peak_pss = max(self.peak_pss, tree_pss(self.root))
            self.done.wait(0.5)


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited meanwhile
            total += proc.memory_info().rss
    return total


def pss_uss(pid: int) -> tuple[int, int]:
    """(PSS, USS) of one process in bytes, from /proc/<pid>/smaps_rollup: what the machine pays.

    RSS counts the shared pages of the interpreter and the libraries once per process; PSS
    splits them among their users, so the PSS of a tree adds up to what it really holds.
    """
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields.get("Pss", 0), uss


def tree_pss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error, OSError):
            total += pss_uss(proc.pid)[0]
    return total


ROLES = {
    "probe_stack.commands.cli": "probe run",
    "probe_stack/runtime/watch.py": "probe run",  # what probe run execs once the stack is up
    "supervisor.supervisord": "supervisord",
    "probe_stack.runtime.lifecycle_listener": "lifecycle",
    "probe_stack.metrics.server": "metrics",
    "probe_listener": "listener",
    "probe_sender": "sender",
}


def tree_roles(root: psutil.Process) -> dict[str, psutil.Process]:
    """The stack's processes by role (probe run, supervisord, lifecycle, metrics, listener, sender)."""
    out: dict[str, psutil.Process] = {}
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            cmdline = proc.cmdline()
            for module, role in ROLES.items():
                if ("-m" in cmdline and module in cmdline) or any(arg.endswith(module) for arg in cmdline):
                    out[role] = proc
    return out


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
    emulator: EmulatorClient
    tmp: Path
    env: dict[str, str]
    run_dir: str
    proc: Proc | None = None

    @classmethod
    def create(cls, emulator: EmulatorClient, tmp: Path, **settings: object) -> BenchStack:
        run_dir = tempfile.mkdtemp(prefix="pb-")
        env = emulator.env(
            tmp,
            PROBE_RUN_DIR=run_dir,
            METRICS_PORT=free_port(),
            METRICS_HOST="127.0.0.1",
            STARTUP_WAIT_SECONDS=10,
            LOG_LEVEL="WARNING",
            **settings,
        )
        return cls(emulator, tmp, env, run_dir)

    def _store(self, read: Callable[[Store], Any]) -> Any:
        store = Store(self.env["PROBE_DB_PATH"])
        try:
            return read(store)
        finally:
            store.close()

    def app_id(self) -> str:
        return self._store(Store.app_id)

    def events(self) -> list:
        """Every event of the stack's probe instance, by dataset and seqno."""
        return self._store(lambda store: store.events(store.app_id()))

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['METRICS_PORT']}/metrics"

    def start(self) -> None:
        self.proc = start([PYTHON, "-m", "probe_stack.commands.cli", "run"], self.tmp / "stack.log", env=self.env)
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
        wait_until(
            lambda: sum(self._store(Store.in_flight).values()) == 0, timeout, "every event judged", interval=0.25
        )

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
