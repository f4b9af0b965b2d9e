"""`probe run`: the supervised stack (and, for the demo, the emulator) in the foreground.

It is also the container's entrypoint. It validates the configuration before
anything starts (a bad config exits 2 at once instead of restart-looping),
resets the metrics directory, gives supervisord a private control socket with
fresh credentials, and turns a FATAL program into a non-zero exit status, which
supervisord alone cannot do (it always exits 0). As PID 1 it also reaps orphans.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from shared.config import Config
from shared.exits import ExitStatus
from shared.lifecycle import load_config_or_exit
from shared.store import Store, StoreError

ROOT = Path(__file__).resolve().parent.parent
SUPERVISORD_CONF = ROOT / "supervisord.conf"
# The demo's pipeline: a realistic lognormal delay around 40 ms; EMULATOR_FAULTS overrides it.
DEMO_FAULTS = '{"delay_distribution": "lognormal", "delay_ms": 40}'


def run_dir(cfg: Config) -> Path:
    """Private directory of the control socket; derived from the store path so `probe ctl` finds it.

    Under /tmp, because AF_UNIX socket paths are limited to about 107 bytes.
    """
    key = hashlib.sha256(str(Path(cfg.db_path).resolve()).encode()).hexdigest()[:10]
    return Path(os.environ.get("PROBE_RUN_DIR") or Path(tempfile.gettempdir()) / f"probe-{os.getuid()}-{key}")


def prepare(cfg: Config) -> int:
    """Open (create, migrate, check) the store and reset the metrics directory.

    The store is opened here, once, before any program starts: a corrupt or foreign
    file stops the stack with one clear line, and the programs never race to create it.
    """
    metrics_dir = Path(cfg.metrics_dir)
    if metrics_dir.resolve() in (Path("/").resolve(), Path.home().resolve(), ROOT):
        print(f"probe: refusing to wipe {metrics_dir} as the metrics directory", file=sys.stderr)
        return ExitStatus.CONFIG
    try:
        Store(cfg.db_path).close()
    except StoreError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return ExitStatus.STORE
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    return ExitStatus.OK


def _start_emulator(cfg: Config) -> subprocess.Popen:
    parts = urlsplit(cfg.websocket_url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        print("probe run --with-emulator: WEBSOCKET_URL must point at 127.0.0.1", file=sys.stderr)
        raise SystemExit(ExitStatus.CONFIG)
    port = parts.port or 80
    cmd = [
        sys.executable,
        "-m",
        "emulator",
        "--port",
        str(port),
        "--realm",
        cfg.keycloak_realm,
        "--client-id",
        cfg.client_id,
        "--client-secret",
        cfg.client_secret,
        "--dataset",
        f"{cfg.dataset_id}/{cfg.dataset_version}",
        "--webhook-token",
        cfg.webhook_token,
        "--faults",
        os.environ.get("EMULATOR_FAULTS", DEMO_FAULTS),
    ]
    emulator = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    import requests

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).ok:
                return emulator
        except requests.RequestException:
            pass
        if emulator.poll() is not None:
            break
        time.sleep(0.1)
    emulator.kill()
    print(f"probe run: the emulator did not start on port {port}", file=sys.stderr)
    raise SystemExit(ExitStatus.FATAL)


def _supervisor_env(cfg: Config, rdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PROBE_PYTHON=sys.executable,
        PROBE_WORKDIR=os.getcwd(),
        PROBE_RUN_DIR=str(rdir),
        PROBE_FATAL_MARKER=str(rdir / "fatal"),
        PROMETHEUS_MULTIPROC_DIR=str(Path(cfg.metrics_dir).resolve()),
        SUPERVISOR_USER="probe",
        SUPERVISOR_PASSWORD=secrets.token_urlsafe(24),
    )
    return env


def _write_ctl_conf(rdir: Path, env: dict[str, str]) -> Path:
    path = rdir / "supervisorctl.conf"
    path.write_text(
        "[supervisorctl]\n"
        f"serverurl=unix://{rdir}/supervisor.sock\n"
        f"username={env['SUPERVISOR_USER']}\npassword={env['SUPERVISOR_PASSWORD']}\n"
    )
    path.chmod(0o600)
    return path


def run(with_emulator: bool = False) -> int:
    cfg = load_config_or_exit()
    code = prepare(cfg)
    if code:
        return code
    rdir = run_dir(cfg)
    rdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if rdir.is_symlink() or rdir.stat().st_uid != os.getuid():
        print(f"probe: {rdir} is not a private directory of this user; remove it or set PROBE_RUN_DIR", file=sys.stderr)
        return ExitStatus.CONFIG
    rdir.chmod(0o700)
    (rdir / "fatal").unlink(missing_ok=True)
    env = _supervisor_env(cfg, rdir)
    _write_ctl_conf(rdir, env)
    emulator = _start_emulator(cfg) if with_emulator else None
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(SUPERVISORD_CONF)],
        env=env,
        start_new_session=True,
    )
    host = "127.0.0.1" if cfg.metrics_host in ("0.0.0.0", "::") else cfg.metrics_host
    lines = [
        f"probe: stack starting (supervisord pid {supervisord.pid})",
        f"  metrics  http://{host}:{cfg.metrics_port}/metrics  (also /healthz, /readyz)",
        f"  store    {Path(cfg.db_path).resolve()}  ->  probe status",
        "  control  probe ctl status | probe ctl restart sender",
    ]
    if emulator is not None:
        lines.append(f"  truth    {cfg.keycloak_server.rsplit('/auth', 1)[0]}/_emulator/truth")
    print("\n".join([*lines, "  stop     Ctrl-C"]), flush=True)

    def forward(sig: int, _frame: object) -> None:
        if supervisord.poll() is None:
            supervisord.send_signal(signal.SIGTERM if sig == signal.SIGINT else sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = _wait(supervisord)
    if emulator is not None:
        emulator.terminate()
        emulator.wait(10)
    fatal = rdir / "fatal"
    if fatal.exists():
        print(f"probe: program {fatal.read_text().strip()} went FATAL; the stack stopped", file=sys.stderr)
        return ExitStatus.FATAL
    return code


def _wait(child: subprocess.Popen) -> int:
    """Wait for supervisord; as PID 1 (a container) also reap orphans re-parented to us."""
    if os.getpid() != 1:
        while True:
            try:
                return child.wait()
            except InterruptedError:
                continue
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode


def ctl(args: list[str]) -> int:
    """`probe ctl ...`: supervisorctl against this configuration's stack."""
    cfg = load_config_or_exit()
    conf = run_dir(cfg) / "supervisorctl.conf"
    if not conf.exists():
        print(f"probe ctl: no running stack found ({conf} is missing)", file=sys.stderr)
        return ExitStatus.FATAL
    # Without arguments supervisorctl would open an interactive shell; an operator wants the status.
    return subprocess.call([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *(args or ["status"])])
