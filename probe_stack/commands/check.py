"""`probe check`: one end-to-end check for deploy pipelines and on-call, with no stack running.

It posts a few events to every dataset and waits for them on the subscription, with the
sender's and the listener's own code (collector client, subscription, classification), but
with an app_id and a store of its own, in a temporary directory. So it never disturbs a
running stack: that stack's listener sees the check's events as another instance's
(`probe_events_wrong_appid`), and counts nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probe_stack.commands import scratch
from shared.config import Config, Dataset
from shared.exits import ExitStatus
from shared.store import EventRow, EventState, NoteOwner, note_key

if TYPE_CHECKING:  # imported for real only when the check runs, after PROMETHEUS_MULTIPROC_DIR is set
    from probe_sender.send_step import SendStep
    from shared.store import Store
    from shared.tracing import NoTracer

log = logging.getLogger("check")

SPACING_SECONDS = 0.2  # between two events of one dataset: they are few, and need not be fast
SUBSCRIBE_WAIT_SECONDS = 15.0


@dataclass
class Outcome:
    dataset: str
    seqno: int
    outcome: str  # received, post_failed, missing, not_subscribed
    latency_ms: float | None = None
    detail: str = ""


def run(cfg: Config, count: int, timeout: float, as_json: bool, only: str | None) -> int:
    datasets = [ds for ds in cfg.datasets if only is None or ds.name == only]
    if not datasets:
        names = ", ".join(ds.name for ds in cfg.datasets)
        print(f"probe check: no dataset {only!r} in the configuration (datasets: {names})", file=sys.stderr)
        return ExitStatus.CONFIG
    with scratch.directory() as tmp:
        # Before prometheus_client is imported: the check's counters stay in its own directory,
        # never in a running stack's.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp) / "metrics")
        (Path(tmp) / "metrics").mkdir()
        outcomes = _check(cfg, datasets, Path(tmp) / "check.sqlite3", count, timeout)
    ok = all(o.outcome == "received" for o in outcomes)
    if as_json:
        print(json.dumps({"ok": ok, "events": [asdict(o) for o in outcomes]}, indent=2))
    else:
        _print_table(outcomes, ok)
    return ExitStatus.OK if ok else ExitStatus.FATAL


def _print_table(outcomes: list[Outcome], ok: bool) -> None:
    print(f"{'dataset':<24}  {'seqno':>5}  {'outcome':<14}  {'latency':>10}  detail")
    for o in outcomes:
        latency = f"{o.latency_ms:.1f}ms" if o.latency_ms is not None else "-"
        print(f"{o.dataset[:24]:<24}  {o.seqno:>5}  {o.outcome:<14}  {latency:>10}  {o.detail}")
    missing = [f"{o.dataset}#{o.seqno}" for o in outcomes if o.outcome != "received"]
    verdict = "all events arrived" if ok else f"{len(missing)} of {len(outcomes)} did not arrive: {' '.join(missing)}"
    print(f"probe check: {verdict}")


def _check(cfg: Config, datasets: list[Dataset], db_path: Path, count: int, timeout: float) -> list[Outcome]:
    from shared.store import Store
    from shared.tracing import NoTracer

    tracer = NoTracer()
    store = Store(db_path)
    app_id = store.app_id()  # new: the check's own
    stop = threading.Event()
    threads = _subscriptions(cfg, datasets, store, app_id, tracer, stop)
    for thread in threads:
        thread.start()
    try:
        unsubscribed = _wait_for_subscriptions(cfg, datasets, store)
        failures = _post(cfg, datasets, store, app_id, tracer, count)
        deadline = time.monotonic() + timeout
        open_states = (EventState.PENDING, EventState.POSTED)
        while time.monotonic() < deadline and any(e.state in open_states for e in store.events(app_id)):
            time.sleep(0.05)
        return [_outcome(row, store, failures, unsubscribed, timeout) for row in store.events(app_id)]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        store.close()


def _subscriptions(
    cfg: Config, datasets: list[Dataset], store: Store, app_id: str, tracer: NoTracer, stop: threading.Event
) -> list[threading.Thread]:
    """A subscription per dataset with the listener's own receiver, as threads not yet started."""
    from probe_listener.receiver import Receiver
    from probe_listener.subscription import Subscription

    threads = []
    for ds in datasets:
        receiver = Receiver(cfg, ds, store, app_id, tracer, cfg.siblings(ds))
        subscription = Subscription(cfg, ds, store, receiver.handle, stop)
        threads.append(threading.Thread(target=subscription.run, name=f"check-{ds.name}", daemon=True))
    return threads


def _wait_for_subscriptions(cfg: Config, datasets: list[Dataset], store: Store) -> set[str]:
    """Wait a while for every subscription; the names of the datasets still without one."""
    fresh = cfg.subscription_fresh_seconds()
    deadline = time.monotonic() + SUBSCRIBE_WAIT_SECONDS
    unsubscribed = {ds.name for ds in datasets}
    while unsubscribed and time.monotonic() < deadline:
        unsubscribed = {n for n in unsubscribed if store.subscribed_since(n, fresh, time.time()) is None}
        time.sleep(0.05)
    return unsubscribed


def _post(
    cfg: Config, datasets: list[Dataset], store: Store, app_id: str, tracer: NoTracer, count: int
) -> dict[tuple[str, int], str]:
    """Post `count` events to each dataset, the datasets side by side; why each failed post failed."""
    from probe_sender.send_step import SendStep
    from probe_sender.wiring import collectors

    _, posts_to = collectors(cfg, datasets, tracer)
    failures: dict[tuple[str, int], str] = {}
    key = store.event_key()
    posters = [
        threading.Thread(
            target=_post_all,
            args=(SendStep(store, app_id, ds, collector, key), count, failures),
            name=f"check-post-{ds.name}",
            daemon=True,
        )
        for ds, collector in zip(datasets, posts_to, strict=True)
    ]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join()
    return failures


def _outcome(
    row: EventRow, store: Store, failures: dict[tuple[str, int], str], unsubscribed: set[str], timeout: float
) -> Outcome:
    """What became of one event, in the check's words."""
    if row.state in (EventState.RECEIVED, EventState.LATE):
        outcome = Outcome(row.dataset, row.seqno, "received", round((row.latency or 0.0) * 1000, 1))
        if row.receive_count > 1:
            outcome.detail = f"{row.receive_count} copies"
        return outcome
    if row.state is EventState.POST_FAILED:
        detail = failures.get((row.dataset, row.seqno), row.post_error or "")
        return Outcome(row.dataset, row.seqno, "post_failed", detail=detail)
    if row.dataset in unsubscribed:
        return Outcome(row.dataset, row.seqno, "not_subscribed", detail=_note(store, row.dataset))
    return Outcome(row.dataset, row.seqno, "missing", detail=f"not arrived within {timeout:g}s")


def _post_all(step: SendStep, count: int, failures: dict[tuple[str, int], str]) -> None:
    """Post the dataset's events with the sender's own send step, noting why any post failed."""
    for _ in range(count):
        event = step.record(time.time())
        result = step.post(event)
        if not result.ok:
            # The same words as the sender's note behind /readyz: the reason, its cause and host.
            failures[step.ds.name, event["seqno"]] = f"{result.reason}: {step.problem(result)}"
        time.sleep(SPACING_SECONDS)


def _note(store: Store, dataset: str) -> str:
    text = store.note(note_key(NoteOwner.LISTENER, dataset))
    return text or "no subscription within the wait"
