"""What `probe run` becomes once the stack is up: a small watcher in the same process.

`probe run` needs the configuration, the store and its checks to start the stack (about
25 MB of modules), but afterwards it only waits for supervisord, forwards stop signals,
reaps orphans as PID 1, and turns a FATAL program into exit status 1. So it execs this
file, which imports nothing but the standard library and two small modules, in a fresh
interpreter started without `site` (-S). The pid stays the same: supervisord and the
demo emulator remain its children (their parent-death signal still points at it), and
the locks (store, run directory, metrics directory) stay held through inherited descriptors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: probe_stack/runtime/ is two levels down
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
EMULATOR_STOP_SECONDS = 10.0


def exec_watcher(
    supervisord: int,
    emulator: int | None,
    run_dir: Path,
    lock_fds: list[int],
    json_output: bool,
    relay_fd: int = -1,
) -> None:
    """Replace the current process with the watcher (never returns). Stop signals are blocked
    until the watcher has its handlers: the mask survives exec, and a signal meanwhile waits.

    `lock_fds`: the stack's locks (store, run directory, metrics directory), held on by the
    watcher. `relay_fd`: the read end of the pipe the stack writes its output to (LOG_FORMAT=json),
    which the watcher copies to its standard output with every line made JSON."""
    for fd in lock_fds:
        os.set_inheritable(fd, True)
    if relay_fd >= 0:
        os.set_inheritable(relay_fd, True)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    sys.stdout.flush()
    sys.stderr.flush()
    args = [sys.executable, "-S", str(Path(__file__).resolve()), str(supervisord), str(emulator or 0)]
    locks = ",".join(str(fd) for fd in lock_fds)
    os.execv(sys.executable, [*args, str(run_dir), locks, "json" if json_output else "text", str(relay_fd)])


def wait_for(child: int, reaped: set[int]) -> int:
    """Wait for `child`'s exit status; as PID 1 (a container) also reap orphans re-parented to us,
    noting each pid reaped (a reaped pid may be reused: it must never be signalled again)."""
    while True:
        try:
            pid, status = os.waitpid(-1 if os.getpid() == 1 else child, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0
        reaped.add(pid)
        if pid == child:
            return os.waitstatus_to_exitcode(status)


RELAY_LINE_BYTES = 1 << 20  # a longer line is passed on in pieces, each one JSON
RELAY_DRAIN_SECONDS = 5.0  # after supervisord ends: what its programs still wrote


def relay(fd: int, wrap: Callable[[str], str]) -> None:
    """Copy the stack's output from the pipe to standard output, a line at a time, each made JSON."""
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace", newline="\n") as stream:
        while line := stream.readline(RELAY_LINE_BYTES):
            # Nobody reading our output any more is no reason to stop draining: no writer may block.
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.write(wrap(line) + "\n")
                sys.stdout.flush()


def stop_emulator(pid: int) -> None:
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + EMULATOR_STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from shared.exits import ExitStatus
    from shared.jsonline import as_json_line, json_line

    supervisord, emulator, run_dir, json_output = int(argv[0]), int(argv[1]), Path(argv[2]), argv[4] == "json"
    relay_fd = int(argv[5]) if len(argv) > 5 else -1
    relaying = None
    if relay_fd >= 0:
        relaying = threading.Thread(target=relay, args=(relay_fd, as_json_line), name="relay", daemon=True)
        relaying.start()

    def say(text: str) -> None:
        print(json_line("ERROR", "run", text) if json_output else text, file=sys.stderr, flush=True)

    reaped: set[int] = set()

    def forward(_sig: int, _frame: object) -> None:
        # Every stop signal stops the stack cleanly; SIGHUP too (a closed terminal), where
        # supervisord alone would restart every program.
        if supervisord not in reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisord, signal.SIGTERM)

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    code = wait_for(supervisord, reaped)
    if emulator not in reaped:
        stop_emulator(emulator)
    if relaying is not None:
        relaying.join(RELAY_DRAIN_SECONDS)
    fatal = run_dir / "fatal"
    if fatal.exists():
        say(f"probe: program {fatal.read_text().strip()} went FATAL; the stack stopped")
        return ExitStatus.FATAL
    if code != 0:
        say(f"probe: supervisord ended unexpectedly (status {code})")
        return ExitStatus.FATAL
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
