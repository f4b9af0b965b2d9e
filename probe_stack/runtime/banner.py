"""What `probe run` tells the operator once the stack starts: every address and command to copy.

Another terminal has the configuration file but not this one's environment, so the commands
carry the settings that came from it; none carries a secret.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from probe_stack.metrics.address import metrics_address, url_host
from shared.config import Config

# What the read-only commands need to find this stack and judge its datasets, when it came from
# the environment (`make run-script` reads probe.env): another terminal has the configuration
# file, but not this one's variables. None of them is a secret.
_READER_SETTINGS = {
    "db_path": "PROBE_DB_PATH",
    "metrics_host": "METRICS_HOST",
    "metrics_port": "METRICS_PORT",
    "environment": "ORIGO_ENVIRONMENT",
    "dataset_id": "DATASET_ID",
    "dataset_version": "DATASET_VERSION",
    "shard": "PROBE_SHARD",
}


def reader_command(cfg: Config, environ: Mapping[str, str] | None = None, executable: str | None = None) -> str:
    """`probe` as another terminal must type it to reach this stack, from any directory and with no
    secret: the executable's real path (.venv/bin/probe is rarely on PATH), PROBE_CONFIG when a file
    was read, and the settings `probe status`, `probe ctl` and `probe health` read that came from
    the environment."""
    environ = os.environ if environ is None else environ
    python = Path(os.path.abspath(executable or sys.executable))
    script = python.parent / "probe"
    words = [shlex.quote(str(script))] if script.exists() else [shlex.quote(str(python)), "-m", "probe_stack"]
    settings = []
    if cfg.config_file:
        settings.append(f"PROBE_CONFIG={shlex.quote(cfg.config_file)}")
    for name, variable in _READER_SETTINGS.items():
        if "environment" in cfg.origin.get(name, ""):
            value = Path(cfg.db_path).resolve() if name == "db_path" else getattr(cfg, name)
            settings.append(f"{variable}={shlex.quote(str(value))}")
    if environ.get("PROBE_RUN_DIR"):
        settings.append(f"PROBE_RUN_DIR={shlex.quote(os.path.abspath(environ['PROBE_RUN_DIR']))}")
    return " ".join([*settings, *words])


def stack_banner(cfg: Config, supervisord_pid: int) -> tuple[list[str], dict[str, str]]:
    """What `probe run` tells the operator once the stack starts: every address and command to
    copy, the status page's among them (it is what a browser wants), as lines and as JSON fields."""
    host, port = metrics_address(cfg)
    base = f"http://{url_host(host)}:{port}"
    probe = reader_command(cfg)
    lines = [
        f"probe: stack starting (supervisord pid {supervisord_pid})",
        f"  metrics  {base}/metrics  (also /healthz, /readyz)",
        f"  page     {base}/status  (the status page, for a browser)",
        f"  store    {Path(cfg.db_path).resolve()}",
        f"  status   {probe} status",
        f"  control  {probe} ctl status   ({probe} ctl restart sender, ...)",
    ]
    banner = {
        "metrics_url": f"{base}/metrics",
        "status_page_url": f"{base}/status",
        "store": str(Path(cfg.db_path).resolve()),
        "status_command": f"{probe} status",
        "ctl_command": f"{probe} ctl status",
    }
    return lines, banner


def add_emulator(cfg: Config, lines: list[str], banner: dict[str, str]) -> None:
    """The demo's lines: where the emulator's truth is, and how to inject faults."""
    base = cfg.keycloak_server.rsplit("/auth", 1)[0]
    banner["emulator_url"] = base
    lines.append(f"  truth    {base}/_emulator/truth")
    from emulator.options import CONTROL_TOKEN_ENV

    auth = f' -H "Authorization: Bearer ${CONTROL_TOKEN_ENV}"' if os.environ.get(CONTROL_TOKEN_ENV) else ""
    lines.append(f"""  faults   curl{auth} -X PUT {base}/_emulator/faults -d '{{"drop_rate": 0.3}}'""")
