"""What `probe run` checks and holds before anything starts: the locks, the ports, the store.

Every lock first (store, run directory, metrics directory), and every check, before anything
is written: a stack that is refused changes nothing of a running one, and says why in one line.
"""

from __future__ import annotations

import os
import socket
from http.server import ThreadingHTTPServer
from pathlib import Path

from probe_stack.metrics import metrics_dir
from probe_stack.runtime import rundir, stack_lock
from probe_stack.runtime.report import say
from shared.config import Config
from shared.exits import ExitStatus
from shared.store import Store, StoreError


def prepare(cfg: Config, holder: str = "") -> int:
    """Open (create, migrate, check) the store and reset the metrics directory.

    The store is opened here, once, before any program starts: a corrupt or foreign
    file stops the stack with one clear line, and the programs never race to create it.
    """
    try:
        store = Store(cfg.db_path)
    except StoreError as exc:
        say(f"probe: {exc}")
        return ExitStatus.STORE
    try:
        forget_fail_outs(store)
    finally:
        store.close()
    try:
        metrics_dir.reset(Path(cfg.metrics_dir), holder)
    except metrics_dir.MetricsDirError as exc:
        say(f"probe: {exc}")
        return ExitStatus.CONFIG
    return ExitStatus.OK


def forget_fail_outs(store: Store) -> None:
    """The sender's restart backoff holds within one stack (supervisord restarting a sender that
    gave up), never into a fresh `probe run`: that is an operator who has changed something, often
    the very setting that made it fail, and must see at once whether it works."""
    count, _ = store.fail_outs()
    if count:
        store.clear_fail_outs()
        say(
            f"probe: the previous run's sender failed out {count} time(s) in a row; its restart backoff "
            "does not carry over: sending starts at once",
            "INFO",
        )


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


def hold(cfg: Config) -> tuple[Path, list[int]] | int:
    """Take the stack's locks (store, run directory, metrics directory): the run directory and the
    locks' descriptors, or the exit status of a refusal, said in one line."""
    try:
        locks = [stack_lock.acquire(cfg.db_path, cfg.config_file or "none (defaults and environment)")]
        rdir, fd, warning = rundir.choose(cfg.db_path, os.environ)
        locks.append(fd)
        if warning:
            say(f"probe: warning: {warning}", "WARNING")
        locks.append(metrics_dir.hold(Path(cfg.metrics_dir)))
    except (stack_lock.StackRunning, metrics_dir.MetricsDirBusy) as exc:
        say(f"probe: {exc}")
        return ExitStatus.BUSY
    except StoreError as exc:
        say(f"probe: {exc}")
        return ExitStatus.STORE
    except stack_lock.RunDirError as exc:
        rdir = rundir.find(cfg.db_path, os.environ)
        say(f"probe: the run directory {rdir} {exc}; remove it or set PROBE_RUN_DIR")
        return ExitStatus.CONFIG
    except metrics_dir.MetricsDirError as exc:
        say(f"probe: {exc}")
        return ExitStatus.CONFIG
    return rdir, locks


def metrics_port_refused(cfg: Config) -> int:
    """ExitStatus.CONFIG, said, when the metrics program could not bind its port; else 0."""
    busy = port_in_use(cfg.metrics_host, cfg.metrics_port)
    if busy:
        say(
            f"probe: METRICS_PORT {cfg.metrics_port} on {cfg.metrics_host} is in use ({busy}); "
            "stop what listens there or set METRICS_PORT"
        )
        return ExitStatus.CONFIG
    return ExitStatus.OK
