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
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from probe_stack.runtime import preflight, rundir
from probe_stack.runtime.banner import add_emulator, stack_banner
from probe_stack.runtime.report import json_output, use_json
from probe_stack.runtime.report import say as _say
from probe_stack.runtime.supervised import start_supervisord, supervisor_env, write_ctl_conf
from probe_stack.runtime.watch import exec_watcher
from shared import log as log_mod
from shared.config import Config
from shared.exits import ExitStatus
from shared.lifecycle import load_config_or_exit, no_core_dumps
from shared.parent import child_dies_with_us

# The demo's pipeline, as the original's local stand-in had it: some events dropped (5 %), some
# delayed (a lognormal delay around 40 ms with a long tail), a few duplicated. EMULATOR_FAULTS overrides it.
DEMO_FAULTS = (
    '{"delay_distribution": "lognormal", "delay_ms": 40, "delay_sigma": 1.2, "drop_rate": 0.05, "duplicate_rate": 0.02}'
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
    from emulator.launch import Identity, launch, wait_up

    port = emulator_port(cfg)
    if isinstance(port, str):
        _say(f"probe run --with-emulator: {port}")
        raise SystemExit(ExitStatus.CONFIG)
    tokens = {ds.webhook_token for ds in cfg.datasets}
    if len(tokens) != 1:
        _say("probe run --with-emulator: the emulator has one webhook token; give every dataset the same one")
        raise SystemExit(ExitStatus.CONFIG)
    datasets = sorted({f"{ds.id}/{ds.version}" for ds in cfg.datasets})
    flags = [*(arg for ds in datasets for arg in ("--dataset", ds))]
    flags += ["--faults", os.environ.get("EMULATOR_FAULTS", DEMO_FAULTS)]
    identity = Identity(cfg.keycloak_realm, cfg.client_id, cfg.client_secret, tokens.pop())
    emulator = launch(port, flags, identity, output, preexec_fn=child_dies_with_us())
    if wait_up(emulator, port):
        return emulator
    emulator.kill()
    _say(f"probe run: the emulator did not start on port {port}")
    raise SystemExit(ExitStatus.FATAL)


def _append_to_stdout() -> None:
    """`probe run > file`: supervisord's programs reopen /dev/stdout and write at the end;
    our own lines must append too, or they overwrite theirs (O_APPEND on the shared file)."""
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.fstat(1).st_mode):
            fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_APPEND)


def run(with_emulator: bool = False) -> int:
    _append_to_stdout()
    no_core_dumps()  # inherited by supervisord and every program: a core would hold the secrets
    cfg = load_config_or_exit()
    use_json(cfg.log_format == "json")
    for warning in cfg.warnings:
        _say(f"probe: warning: {warning}", "WARNING")
    if with_emulator and _faults_refused():
        return ExitStatus.CONFIG
    held = preflight.hold(cfg)
    if isinstance(held, int):
        return held
    rdir, locks = held
    code = preflight.metrics_port_refused(cfg) or (_emulator_port_refused(cfg) if with_emulator else 0)
    if code:
        return code
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    code = preflight.prepare(cfg, f"pid {os.getpid()}, started {started}, store {Path(cfg.db_path).resolve()}")
    if code:
        return code
    _start(cfg, rdir, locks, with_emulator)
    raise AssertionError("unreachable: exec_watcher does not return")


def _faults_refused() -> bool:
    """The emulator would refuse its fault settings, and the stack only say it did not start: say why now."""
    problem = emulator_faults_problem(os.environ.get("EMULATOR_FAULTS", DEMO_FAULTS))
    if problem:
        _say(f"probe run --with-emulator: EMULATOR_FAULTS: {problem}")
    return bool(problem)


def _emulator_port_refused(cfg: Config) -> int:
    port = emulator_port(cfg)
    if isinstance(port, str):
        _say(f"probe run --with-emulator: {port}")
        return ExitStatus.CONFIG
    busy = preflight.port_in_use("127.0.0.1", port)
    if busy:
        _say(
            f"probe run --with-emulator: the emulator's port {port} is in use ({busy}); "
            f"stop what listens there, or set {EMULATOR_URLS} to another port"
        )
        return ExitStatus.CONFIG
    return ExitStatus.OK


def _start(cfg: Config, rdir: Path, locks: list[int], with_emulator: bool) -> None:
    """Start the emulator (for the demo) and supervisord, say where everything is, and become the watcher."""
    (rdir / "fatal").unlink(missing_ok=True)
    env = supervisor_env(cfg, rdir)
    write_ctl_conf(rdir, env)
    rundir.record(cfg.db_path, rdir)
    # LOG_FORMAT=json: everything the stack writes (supervisord's own lines, a traceback) goes
    # through the watcher, which makes every line JSON; the programs' JSON lines pass unchanged.
    relay_read, relay_write = os.pipe() if json_output() else (-1, None)
    emulator = _start_emulator(cfg, relay_write) if with_emulator else None
    supervisord = start_supervisord(env, relay_write)
    if relay_write is not None:
        os.close(relay_write)
    lines, banner = stack_banner(cfg, supervisord.pid)
    if emulator is not None:
        add_emulator(cfg, lines, banner)
    if json_output():
        print(log_mod.json_line("INFO", "run", "stack starting", supervisord_pid=supervisord.pid, **banner), flush=True)
    else:
        print("\n".join([*lines, "  stop     Ctrl-C"]), flush=True)
    # From here on `probe run` only waits, forwards signals and reports: it becomes the watcher.
    exec_watcher(supervisord.pid, emulator.pid if emulator else None, rdir, locks, json_output(), relay_read)
