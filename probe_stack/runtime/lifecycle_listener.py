"""The supervisord eventlistener `lifecycle`: drop a dead process's live gauges; end the stack on FATAL.

Named after its program in supervisord.conf (`probe ctl status` lists it as `lifecycle`). It is
not shared/lifecycle.py, which starts and stops one probe process from the inside.

supervisord itself always exits 0, so a FATAL program is recorded in a marker
file that `probe run` turns into a non-zero exit status.

It runs for the stack's whole life and does almost nothing, so it imports almost
nothing: the eventlistener protocol (a header line, a payload of the length it
names, and a `RESULT` answer) is spoken here directly rather than through
supervisor.childutils, which pulls in xmlrpc and http (about 12 MB), and a dead
process's live gauge files are deleted here rather than through prometheus_client
(another 10 MB). tests/stack/test_lifecycle_listener.py holds both to the originals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from shared.parent import die_with_parent

# prometheus_client's gauge modes whose files belong to one live process
# (multiprocess._LIVE_GAUGE_MULTIPROCESS_MODES); the files are gauge_<mode>_<pid>.db.
LIVE_GAUGE_MODES = ("liveall", "livemin", "livemax", "livesum", "livemostrecent")


def log(message: str) -> None:
    print(f"lifecycle: {message}", file=sys.stderr, flush=True)


def tokens(line: str) -> dict[str, str]:
    """`key:value key:value ...`, as supervisord writes headers and state-event payloads."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def read_event(stdin: BinaryIO) -> tuple[dict[str, str], dict[str, str]] | None:
    """The next event's (headers, payload fields); None when supervisord closed the pipe."""
    line = stdin.readline()
    if not line:
        return None
    headers = tokens(line.decode("utf-8", "replace"))
    payload = stdin.read(int(headers.get("len", "0")))
    first = payload.decode("utf-8", "replace").split("\n", 1)[0]
    return headers, tokens(first)


def mark_process_dead(pid: int, metrics_dir: str) -> None:
    """Delete the live gauges of a process that is gone (what prometheus_client's function does),
    regular files only: a directory or link of that name is none of ours to remove."""
    for mode in LIVE_GAUGE_MODES:
        path = Path(metrics_dir, f"gauge_{mode}_{pid}.db")
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                path.unlink()


def main() -> int:
    die_with_parent()
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    marker = Path(os.environ["PROBE_FATAL_MARKER"])
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        event = read_event(stdin)
        if event is None:
            return 0
        headers, fields = event
        name = fields.get("processname", "?")
        kind = headers.get("eventname", "")
        if kind in ("PROCESS_STATE_EXITED", "PROCESS_STATE_STOPPED") and fields.get("pid", "").isdigit():
            mark_process_dead(int(fields["pid"]), metrics_dir)
        elif kind == "PROCESS_STATE_FATAL":
            marker.write_text(name + "\n")
            log(f"program {name} is FATAL (it kept exiting at start); stopping the stack")
            os.kill(os.getppid(), signal.SIGTERM)
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
