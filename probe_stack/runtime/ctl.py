"""`probe ctl`: supervisorctl against the stack of this configuration, found from its store path.

No secret is needed: `probe run` left the stack's control credentials in its private run
directory (runtime/rundir.py), readable by the same user only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from probe_stack.runtime import rundir
from probe_stack.runtime.report import say
from shared.config import Config, config_read
from shared.exits import ExitStatus
from shared.lifecycle import load_config_or_exit

# How long `probe ctl` waits for supervisord: a stopped (SIGSTOP) or hung supervisord accepts the
# connection and never answers. Commands that stop programs wait up to their stopwaitsecs
# (40 s for the sender) and startsecs.
CTL_QUICK_SECONDS = 15.0
CTL_SLOW_SECONDS = 150.0
CTL_QUICK_COMMANDS = frozenset({"status", "pid", "avail", "version", "help", "clear"})


def ctl_deadline(args: list[str]) -> float:
    """Seconds `probe ctl ARGS` may take before it gives up on supervisord."""
    verb = args[0] if args else "status"
    return CTL_QUICK_SECONDS if verb in CTL_QUICK_COMMANDS else CTL_SLOW_SECONDS


def run_dir(cfg: Config) -> Path:
    """Private directory of the control socket of the stack on this store (see runtime/rundir.py)."""
    return rundir.find(cfg.db_path, os.environ)


def stack_answers(rdir: Path) -> bool:
    """Whether a supervisord listens on the stack's control socket (a file left by a killed stack does not)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(rdir / "supervisor.sock"))
        except OSError:
            return False
    return True


# Every program writes to probe run's standard output (supervisord.conf: stdout_logfile=/dev/stdout),
# so supervisord has no log file that `tail` could read.
NO_TAIL = (
    "probe ctl: tail: the programs log to the standard output of `probe run` (its terminal, the "
    "container's log or the file it was redirected to), not to a file supervisord could tail"
)


def ctl(args: list[str]) -> int:
    """`probe ctl ...`: supervisorctl against this configuration's stack (no secret needed)."""
    cfg = load_config_or_exit("probe ctl", for_reading=True)
    rdir = run_dir(cfg)
    conf = rdir / "supervisorctl.conf"
    if not conf.exists() or not stack_answers(rdir):
        store = Path(cfg.db_path).resolve()
        say(
            f"probe ctl: no stack runs for store {store} "
            f"(nothing answers on {rdir}/supervisor.sock; {config_read(cfg)})"
        )
        return ExitStatus.NO_STACK
    if args and args[0] in ("tail", "fg", "maintail"):
        say(NO_TAIL)
        return ExitStatus.CONFIG
    # Without arguments supervisorctl would open an interactive shell; an operator wants the status.
    args = args or ["status"]
    command = [sys.executable, "-P", "-m", "supervisor.supervisorctl", "-c", str(conf), *args]
    deadline = ctl_deadline(args)
    try:
        return subprocess.run(command, timeout=deadline).returncode
    except subprocess.TimeoutExpired:
        say(f"probe ctl: supervisord did not answer within {deadline:g}s (stopped or hung?); gave up")
        return ExitStatus.FATAL
