"""`probe run`: the supervised stack (and, for the demo, the emulator) in the foreground.

It is also the container's entrypoint. It validates the configuration before
anything starts (a bad config exits 2 at once instead of restart-looping),
resets the metrics directory, gives supervisord a private control socket with
fresh credentials, and turns a FATAL program into a non-zero exit status, which
supervisord alone cannot do (it always exits 0). As PID 1 it also reaps orphans.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shlex
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from probe_stack.metrics import metrics_dir
from probe_stack.metrics.address import metrics_address, url_host
from probe_stack.runtime import rundir, stack_lock
from probe_stack.runtime.watch import exec_watcher
from shared import log as log_mod
from shared.config import Config, config_read
from shared.exits import ExitStatus
from shared.lifecycle import load_config_or_exit, no_core_dumps
from shared.parent import child_dies_with_us
from shared.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]  # the checkout: probe_stack/runtime/ is two levels down
SUPERVISORD_CONF = ROOT / "supervisord.conf"
# The demo's pipeline, as the original's local stand-in had it: some events dropped (5 %), some
# delayed (a lognormal delay around 40 ms with a long tail), a few duplicated. EMULATOR_FAULTS overrides it.
DEMO_FAULTS = (
    '{"delay_distribution": "lognormal", "delay_ms": 40, "delay_sigma": 1.2, "drop_rate": 0.05, "duplicate_rate": 0.02}'
)


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
    """Private directory of the control socket of the stack on this store (see probe_stack.runtime.rundir)."""
    return rundir.find(cfg.db_path, os.environ)


def prepare(cfg: Config, holder: str = "") -> int:
    """Open (create, migrate, check) the store and reset the metrics directory.

    The store is opened here, once, before any program starts: a corrupt or foreign
    file stops the stack with one clear line, and the programs never race to create it.
    """
    try:
        store = Store(cfg.db_path)
    except StoreError as exc:
        _say(f"probe: {exc}")
        return ExitStatus.STORE
    try:
        forget_fail_outs(store)
    finally:
        store.close()
    try:
        metrics_dir.reset(Path(cfg.metrics_dir), holder)
    except metrics_dir.MetricsDirError as exc:
        _say(f"probe: {exc}")
        return ExitStatus.CONFIG
    return ExitStatus.OK


def forget_fail_outs(store: Store) -> None:
    """The sender's restart backoff holds within one stack (supervisord restarting a sender that
    gave up), never into a fresh `probe run`: that is an operator who has changed something, often
    the very setting that made it fail, and must see at once whether it works."""
    count, _ = store.fail_outs()
    if count:
        store.clear_fail_outs()
        _say(
            f"probe: the previous run's sender failed out {count} time(s) in a row; its restart backoff "
            "does not carry over: sending starts at once",
            "INFO",
        )


def emulator_faults_problem(text: str) -> str | None:
    """What is wrong with the demo emulator's fault settings (EMULATOR_FAULTS), checked before
    anything starts: the emulator would refuse them, and the stack would only say it did not start."""
    import json

    from emulator.faults import FaultError, Faults

    try:
        changes = json.loads(text)
        if not isinstance(changes, dict):
            return 'expected a JSON object of fault settings, such as {"drop_rate": 0.3}'
        Faults().updated(changes)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at character {exc.pos})"
    except (FaultError, ValueError) as exc:
        return str(exc)
    return None


EMULATOR_URLS = "KEYCLOAK_SERVER, COLLECTOR_URL and WEBSOCKET_URL (and every dataset's own URLs)"


def emulator_port(cfg: Config) -> int | str:
    """The one loopback port the emulator serves every URL of the stack on, or why there is none.

    Every URL counts, not only the subscription's: a dataset whose collector URL still names the
    old port (deploy/demo.yaml's second one) would post to whatever listens there, not the emulator.
    """
    urls = {"KEYCLOAK_SERVER": cfg.keycloak_server}
    for ds in cfg.datasets:
        urls[f"WEBSOCKET_URL of {ds.name}"] = ds.websocket_url
        urls[f"COLLECTOR_URL of {ds.name}"] = ds.collector_url
    where: dict[int, list[str]] = {}
    for name, url in urls.items():
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            return f"{name} is not on 127.0.0.1 ({parts.hostname}); the emulator serves only there"
        default = 443 if parts.scheme in ("https", "wss") else 80
        where.setdefault(parts.port or default, []).append(name)
    if len(where) != 1:
        ports = "; ".join(f"{port}: {', '.join(names)}" for port, names in sorted(where.items()))
        return f"the emulator serves one port, and the URLs name several ({ports}): set {EMULATOR_URLS} to one"
    return next(iter(where))


def _start_emulator(cfg: Config, output: int | None = None) -> subprocess.Popen:
    from emulator.options import SECRET_ENV, TOKEN_ENV

    port = emulator_port(cfg)
    if isinstance(port, str):
        _say(f"probe run --with-emulator: {port}")
        raise SystemExit(ExitStatus.CONFIG)
    tokens = {ds.webhook_token for ds in cfg.datasets}
    if len(tokens) != 1:
        _say("probe run --with-emulator: the emulator has one webhook token; give every dataset the same one")
        raise SystemExit(ExitStatus.CONFIG)
    datasets = sorted({f"{ds.id}/{ds.version}" for ds in cfg.datasets})
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "emulator",
        "--port",
        str(port),
        "--realm",
        cfg.keycloak_realm,
        "--client-id",
        cfg.client_id,
        *(arg for ds in datasets for arg in ("--dataset", ds)),
        "--faults",
        os.environ.get("EMULATOR_FAULTS", DEMO_FAULTS),
    ]
    # Secrets through the environment, never the command line (which every user sees in ps).
    env = {**os.environ, SECRET_ENV: cfg.client_secret, TOKEN_ENV: tokens.pop()}
    emulator = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=output,
        start_new_session=True,
        preexec_fn=child_dies_with_us(),
    )
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
    _say(f"probe run: the emulator did not start on port {port}")
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
        # supervisord's own lines are plain text; with LOG_FORMAT=json the watcher makes them JSON
        # (its program starts, exits and restarts are what an operator wants to see).
        SUPERVISOR_LOGLEVEL="info",
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


_json_output = False  # LOG_FORMAT=json: our own lines are JSON too


def _say(text: str, level: str = "ERROR") -> None:
    """A line of `probe run` for the operator, on stderr: plain, or JSON with LOG_FORMAT=json."""
    print(log_mod.json_line(level, "run", text) if _json_output else text, file=sys.stderr, flush=True)


def port_in_use(host: str, port: int) -> str | None:
    """Whether the server to come could not bind host:port (then it would only fail later, or a
    client would talk to a stranger); the reason, or None.

    It binds, as the real server will (SO_REUSEADDR, as http.server and aiohttp set it), rather
    than connecting: a socket bound there but not listening accepts no connection, yet takes
    the port.
    """
    server = ThreadingHTTPServer  # the metrics server's base: its address family and reuse flags
    with socket.socket(server.address_family, socket.SOCK_STREAM) as probe:
        if server.allow_reuse_address:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"it cannot be bound: {exc.strerror or exc}"
    return None


def _append_to_stdout() -> None:
    """`probe run > file`: supervisord's programs reopen /dev/stdout and write at the end;
    our own lines must append too, or they overwrite theirs (O_APPEND on the shared file)."""
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.fstat(1).st_mode):
            fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_APPEND)


# What the read-only commands need to find this stack, when it came from the environment: another
# terminal has the configuration file, but not this one's variables.
_READER_SETTINGS = {"db_path": "PROBE_DB_PATH", "metrics_host": "METRICS_HOST", "metrics_port": "METRICS_PORT"}


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


def run(with_emulator: bool = False) -> int:
    global _json_output
    _append_to_stdout()
    no_core_dumps()  # inherited by supervisord and every program: a core would hold the secrets
    cfg = load_config_or_exit()
    _json_output = cfg.log_format == "json"
    for warning in cfg.warnings:
        _say(f"probe: warning: {warning}", "WARNING")
    if with_emulator:  # the emulator would refuse them, and the stack only say it did not start
        problem = emulator_faults_problem(os.environ.get("EMULATOR_FAULTS", DEMO_FAULTS))
        if problem:
            _say(f"probe run --with-emulator: EMULATOR_FAULTS: {problem}")
            return ExitStatus.CONFIG
    # Every lock first (store, run directory, metrics directory), and every check, before anything
    # is written: a stack that is refused changes nothing of a running one.
    try:
        locks = [stack_lock.acquire(cfg.db_path, cfg.config_file or "none (defaults and environment)")]
        rdir, fd, warning = rundir.choose(cfg.db_path, os.environ)
        locks.append(fd)
        if warning:
            _say(f"probe: warning: {warning}", "WARNING")
        locks.append(metrics_dir.hold(Path(cfg.metrics_dir)))
    except (stack_lock.StackRunning, metrics_dir.MetricsDirBusy) as exc:
        _say(f"probe: {exc}")
        return ExitStatus.BUSY
    except StoreError as exc:
        _say(f"probe: {exc}")
        return ExitStatus.STORE
    except stack_lock.RunDirError as exc:
        rdir = rundir.find(cfg.db_path, os.environ)
        _say(f"probe: the run directory {rdir} {exc}; remove it or set PROBE_RUN_DIR")
        return ExitStatus.CONFIG
    except metrics_dir.MetricsDirError as exc:
        _say(f"probe: {exc}")
        return ExitStatus.CONFIG
    busy = port_in_use(cfg.metrics_host, cfg.metrics_port)
    if busy:
        _say(
            f"probe: METRICS_PORT {cfg.metrics_port} on {cfg.metrics_host} is in use ({busy}); "
            "stop what listens there or set METRICS_PORT"
        )
        return ExitStatus.CONFIG
    if with_emulator:
        port = emulator_port(cfg)
        if isinstance(port, str):
            _say(f"probe run --with-emulator: {port}")
            return ExitStatus.CONFIG
        busy = port_in_use("127.0.0.1", port)
        if busy:
            _say(
                f"probe run --with-emulator: the emulator's port {port} is in use ({busy}); "
                f"stop what listens there, or set {EMULATOR_URLS} to another port"
            )
            return ExitStatus.CONFIG
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    code = prepare(cfg, f"pid {os.getpid()}, started {started}, store {Path(cfg.db_path).resolve()}")
    if code:
        return code
    (rdir / "fatal").unlink(missing_ok=True)
    env = _supervisor_env(cfg, rdir)
    _write_ctl_conf(rdir, env)
    rundir.record(cfg.db_path, rdir)
    # LOG_FORMAT=json: everything the stack writes (supervisord's own lines, a traceback) goes
    # through the watcher, which makes every line JSON; the programs' JSON lines pass unchanged.
    relay_read, relay_write = os.pipe() if _json_output else (-1, None)
    emulator = _start_emulator(cfg, relay_write) if with_emulator else None
    supervisord = subprocess.Popen(
        # -P: never import from the working directory, where a stray `supervisor/` (or `shared/`,
        # for the programs, which start there too) would stand in for the real code.
        [sys.executable, "-P", "-m", "supervisor.supervisord", "-n", "-c", str(SUPERVISORD_CONF)],
        env=env,
        stdout=relay_write,
        stderr=relay_write,
        start_new_session=True,
        preexec_fn=child_dies_with_us(),  # it gets SIGTERM when we die, even by kill -9, and stops its programs
    )
    if relay_write is not None:
        os.close(relay_write)
    lines, banner = stack_banner(cfg, supervisord.pid)
    if emulator is not None:
        base = cfg.keycloak_server.rsplit("/auth", 1)[0]
        banner["emulator_url"] = base
        lines.append(f"  truth    {base}/_emulator/truth")
        from emulator.options import CONTROL_TOKEN_ENV

        auth = f' -H "Authorization: Bearer ${CONTROL_TOKEN_ENV}"' if os.environ.get(CONTROL_TOKEN_ENV) else ""
        lines.append(f"""  faults   curl{auth} -X PUT {base}/_emulator/faults -d '{{"drop_rate": 0.3}}'""")
    if _json_output:
        print(log_mod.json_line("INFO", "run", "stack starting", supervisord_pid=supervisord.pid, **banner), flush=True)
    else:
        print("\n".join([*lines, "  stop     Ctrl-C"]), flush=True)

    # From here on `probe run` only waits, forwards signals and reports: it becomes the watcher.
    exec_watcher(supervisord.pid, emulator.pid if emulator else None, rdir, locks, _json_output, relay_read)
    raise AssertionError("unreachable: exec_watcher does not return")


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
        _say(
            f"probe ctl: no stack runs for store {store} "
            f"(nothing answers on {rdir}/supervisor.sock; {config_read(cfg)})"
        )
        return ExitStatus.NO_STACK
    if args and args[0] in ("tail", "fg", "maintail"):
        _say(NO_TAIL)
        return ExitStatus.CONFIG
    # Without arguments supervisorctl would open an interactive shell; an operator wants the status.
    args = args or ["status"]
    command = [sys.executable, "-P", "-m", "supervisor.supervisorctl", "-c", str(conf), *args]
    deadline = ctl_deadline(args)
    try:
        return subprocess.run(command, timeout=deadline).returncode
    except subprocess.TimeoutExpired:
        _say(f"probe ctl: supervisord did not answer within {deadline:g}s (stopped or hung?); gave up")
        return ExitStatus.FATAL
