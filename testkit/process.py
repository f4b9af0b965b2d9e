"""Processes a test or a benchmark starts: each in a process group of its own, stopped by that group only.

A process group per child means a stop reaches what the child started in its group too (a shell's
children, a forgotten helper), and nothing else: no name is ever matched, no stranger signalled.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (and to bind to port 0)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))  # every address: a container on the host network binds them all
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nobody listens on right now, below the kernel's ephemeral range.

    A port the kernel picks is one it also hands to outgoing connections, and the suite makes
    many: in the seconds a slow starter (a container) takes to bind it, another test's client
    can take it ("Address already in use", seen once in CI). Below the range only another
    picker can collide, and a random pick over thousands of ports makes that rare."""
    low = _ephemeral_low()
    first = max(1024, low - 16384)
    for _ in range(100):
        port = random.randrange(first, low)
        if _bindable(port):
            return port
    with socket.socket() as s:  # a machine with that whole span in use: the kernel's pick
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
    """A child process (the leader of its own process group) whose output goes to a file shown on failure."""

    popen: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, sig: int) -> None:
        """Signal the child's group if it leads one (`start` makes it), else the child alone; only while it
        is unreaped, when its pid is surely still its own."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            if os.getpgid(self.popen.pid) == self.popen.pid:
                os.killpg(self.popen.pid, sig)
            else:  # started by hand, in the caller's group
                self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.signal_group(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.popen.wait(5)
        return self.popen.returncode


def start(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
    """Run `args` from the project's root in a new process group, its output appended to `log_path`."""
    with open(log_path, "ab") as log_file:  # the child holds its own copy for its lifetime
        popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(popen, log_path)


def stop_all(procs: list[Proc], timeout: float = 60) -> None:
    """Stop each, the last started first (what depends on an earlier one goes before it)."""
    for proc in reversed(procs):
        proc.stop(signal.SIGTERM, timeout=timeout)


def show_logs(failed: bool, home: Path, logs: list[str], tail: int) -> None:
    """Print the end of each log (named relative to `home`) for a failed test: pytest shows it with the failure."""
    if not failed:
        return
    for log in logs:
        print(f"---- {log} ----\n" + (home / log).read_text(errors="replace")[-tail:])
