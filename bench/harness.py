"""Running the real supervised stack against the emulator for a benchmark, and watching its cost."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from testkit.emulator import EmulatorClient
from testkit.process import wait_until
from testkit.stack import PROGRAMS, ProbeStack

__all__ = ["PROGRAMS", "BenchStack", "RssSampler", "pss_uss", "tree_cpu", "tree_roles"]


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
class BenchStack(ProbeStack):
    """The kit's stack, quiet (warnings only: the bench measures, it does not read logs), with the bench's probes."""

    @classmethod
    def create(cls, emulator: EmulatorClient, tmp: Path, prefix: str = "pb-", **settings: object) -> BenchStack:
        stack = ProbeStack.create(emulator, tmp, prefix, **{"LOG_LEVEL": "WARNING", **settings})
        return cls(stack.emulator, stack.tmp, stack.env, stack.run_dir)

    def wait_judged(self, timeout: float) -> None:
        wait_until(lambda: self.in_flight() == 0, timeout, "every event judged", interval=0.25)

    def scrape_ms(self, count: int = 20) -> float:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            requests.get(self.metrics_url, timeout=10).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        return times[len(times) // 2]
