"""The sender's threads: one that prepares, then one schedule per dataset, sharing the store,
the token and the HTTP connections; and the exit status their end makes."""

from __future__ import annotations

import threading
import time

from probe_sender.collector import Collector
from probe_sender.fail_out import FailOutGroup, fail_out_delay
from probe_sender.sender import Sender
from probe_sender.wiring import collectors
from shared.auth import AuthError, TokenProvider
from shared.config import redact_url
from shared.exits import ExitStatus
from shared.process import Process, run_until_stopped


def run(process: Process) -> int:
    """Send until a stop signal, a fail-out or a crashed schedule; the exit status says which."""
    cfg, store = process.cfg, process.store
    tokens, posts_to = collectors(cfg, cfg.datasets, process.tracer)
    fail_outs = FailOutGroup(
        cfg.max_consecutive_errors, [ds.name for ds in cfg.datasets], on_record=store.fail_outs()[0] > 0
    )
    schedules = Schedules(process, tokens, senders(process, posts_to, fail_outs))
    stopping = f"; in-flight posts finish within {cfg.post_timeout_seconds:.0f}s"
    run_until_stopped(process, [schedules.starter, *schedules.workers], schedules.workers, stopping)
    if fail_outs.failed_out:
        return ExitStatus.FAILED_OUT
    if schedules.crashed.is_set():
        return ExitStatus.FATAL
    process.log.info("stopped")
    return ExitStatus.OK


def senders(process: Process, posts_to: list[Collector], fail_outs: FailOutGroup) -> list[Sender]:
    """One sender per dataset, with its collector, and one line that says where it sends."""
    cfg, app_id = process.cfg, process.app_id
    found = []
    for ds, collector in zip(cfg.datasets, posts_to, strict=True):
        found.append(Sender(cfg, ds, process.store, collector, app_id, fail_outs, process.stop, process.tracer))
        process.log.info(
            "sending to %s every %gs as app_id=%s dataset=%s (%s/%s)",
            redact_url(ds.collector_endpoint()),
            ds.interval_seconds,
            app_id,
            ds.name,
            ds.id,
            ds.version,
            extra={"app_id": app_id, "dataset": ds.name},
        )
    return found


class Schedules:
    """The threads: `starter` prepares in a thread of its own (the main thread must stay free to
    take the stop signal), and each of `workers` runs one dataset's schedule once it is done."""

    def __init__(self, process: Process, tokens: TokenProvider | None, senders: list[Sender]) -> None:
        self.process = process
        self.tokens = tokens
        self.ready = threading.Event()
        self.crashed = threading.Event()
        self.starter = threading.Thread(target=self.prepare, name="prepare")
        self.workers = [threading.Thread(target=self.work, args=(s,), name=f"schedule-{s.ds.name}") for s in senders]

    def prepare(self) -> None:
        """After earlier fail-outs, wait (longer each time) before sending; then fetch the first token,
        whose first request is slow (imports, TLS) and would otherwise stall the first slots."""
        log, stop = self.process.log, self.process.stop
        count, last_at = self.process.store.fail_outs()
        delay = fail_out_delay(count, last_at, time.time())
        if delay > 0:
            log.warning(
                "restart backoff: %d fail-out(s) in a row; waiting %.0fs before sending "
                "(it ends at the first successful post; a fresh `probe run` starts without it)",
                count,
                delay,
                extra={"count": count, "duration": delay},
            )
            stop.wait(delay)
        if self.tokens is not None and not stop.is_set():
            try:
                self.tokens.get()
            except AuthError as exc:
                log.warning("no token yet (%s); the first posts will retry", exc)
        self.ready.set()

    def work(self, sender: Sender) -> None:
        """Run one schedule once prepared; a crash stops the process, non-zero, for a restart."""
        try:
            while not self.ready.wait(1.0) and self.starter.is_alive():
                pass
            sender.wait_for_listener()
            sender.run()
        except Exception:  # e.g. the store stayed locked: exit non-zero so supervisord restarts us
            self.process.log.exception("the schedule of %s stopped unexpectedly", sender.ds.name)
            self.crashed.set()
            self.process.stop.set()
