"""supervisord eventlistener: drop a dead process's live gauges; end the stack when a program goes FATAL.

supervisord itself always exits 0, so a FATAL program is recorded in a marker
file that `probe run` turns into a non-zero exit status.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from supervisor import childutils

from shared.parent import die_with_parent


def log(message: str) -> None:
    print(f"lifecycle: {message}", file=sys.stderr, flush=True)


def main() -> int:
    die_with_parent()
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    marker = Path(os.environ["PROBE_FATAL_MARKER"])
    from prometheus_client.multiprocess import mark_process_dead

    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers["eventname"]
        fields, _ = childutils.eventdata(payload + "\n")
        name = fields.get("processname", "?")
        if event in ("PROCESS_STATE_EXITED", "PROCESS_STATE_STOPPED") and fields.get("pid"):
            mark_process_dead(int(fields["pid"]), metrics_dir)
        elif event == "PROCESS_STATE_FATAL":
            marker.write_text(name + "\n")
            log(f"program {name} is FATAL (it kept exiting at start); stopping the stack")
            os.kill(os.getppid(), signal.SIGTERM)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
