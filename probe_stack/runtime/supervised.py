"""supervisord for one stack: its private control socket, fresh credentials, and its start.

The credentials are made anew at every start and written only to the run directory (mode
0600), so `probe ctl` needs no secret and nothing else can control the stack.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from shared.config import Config
from shared.parent import child_dies_with_us

ROOT = Path(__file__).resolve().parents[2]  # the checkout: probe_stack/runtime/ is two levels down
SUPERVISORD_CONF = ROOT / "supervisord.conf"


def supervisor_env(cfg: Config, rdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PROBE_PYTHON=sys.executable,
        PROBE_WORKDIR=os.getcwd(),
        PROBE_RUN_DIR=str(rdir),
        PROBE_FATAL_MARKER=str(rdir / "fatal"),
        PROMETHEUS_MULTIPROC_DIR=str(Path(cfg.metrics_dir).resolve()),
        SUPERVISOR_USER="probe",
        SUPERVISOR_PASSWORD=secrets.token_urlsafe(24),
        # supervisord's own lines are plain text; with LOG_FORMAT=json the watcher makes them JSON
        # (its program starts, exits and restarts are what an operator wants to see).
        SUPERVISOR_LOGLEVEL="info",
    )
    return env


def write_ctl_conf(rdir: Path, env: dict[str, str]) -> Path:
    path = rdir / "supervisorctl.conf"
    path.write_text(
        "[supervisorctl]\n"
        f"serverurl=unix://{rdir}/supervisor.sock\n"
        f"username={env['SUPERVISOR_USER']}\npassword={env['SUPERVISOR_PASSWORD']}\n"
    )
    path.chmod(0o600)
    return path


def start_supervisord(env: dict[str, str], output: int | None) -> subprocess.Popen:
    return subprocess.Popen(
        # -P: never import from the working directory, where a stray `supervisor/` (or `shared/`,
        # for the programs, which start there too) would stand in for the real code.
        [sys.executable, "-P", "-m", "supervisor.supervisord", "-n", "-c", str(SUPERVISORD_CONF)],
        env=env,
        stdout=output,
        stderr=output,
        start_new_session=True,
        preexec_fn=child_dies_with_us(),  # it gets SIGTERM when we die, even by kill -9, and stops its programs
    )
