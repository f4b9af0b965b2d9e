"""`python -m probe_sender`: start the process, run the sender's threads until told to stop.

One schedule thread per dataset, sharing the store, the token and the HTTP connections.
"""

from __future__ import annotations

from shared import process as process_mod
from shared.exits import ExitStatus

# The schedule threads must get the GIL back promptly from busy post threads (default: 5 ms).
SWITCH_INTERVAL = 0.0005


def main() -> int:
    process = process_mod.start("sender", SWITCH_INTERVAL)
    if isinstance(process, ExitStatus):
        return process
    # Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR, set by start.
    from probe_sender.program import run

    return run(process)


if __name__ == "__main__":
    raise SystemExit(main())
