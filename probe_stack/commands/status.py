"""`probe status`: what the store says about the newest events, for an operator at 3 a.m."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from probe_stack.metrics.address import metrics_address, url_host
from probe_stack.verdict import figures
from probe_stack.verdict.rule import Verdict
from shared.config import Config, config_read
from shared.exits import ExitStatus
from shared.lifecycle import load_config_or_exit
from shared.store import EventRow, Store, StoreError

WORDS = figures.STATE_WORDS  # the metrics' words for the store's states, as on the page
STORE_SCOPE = "events in the store, since it began (judged events older than RETENTION_SECONDS pruned)"
STACK_SCOPE = "the running stack's counters (/metrics), since this stack started"
# The counters `probe status` shows beside the store's totals, in the order of an event's life.
COUNTERS = {
    "probe_events_posted": "posted",
    "probe_event_post_errors": "post_failed",
    "probe_events_received": "received",
    "probe_events_late": "late",
    "probe_events_lost": "lost",
    "probe_events_unobserved": "unobserved",
    "probe_events_duplicated": "duplicates",
}
METRICS_TIMEOUT_SECONDS = 3.0


def stack_counters(cfg: Config, app_id: str) -> dict[str, dict[str, int]] | str:
    """The running stack's counters per dataset, or why there are none: no stack answers, or the one
    that answers on METRICS_PORT is another store's (the demo's, another probe's), told by the app_id
    of its probe_build_info."""
    host, port = metrics_address(cfg)
    where = f"http://{url_host(host)}:{port}/metrics"
    text = _scrape(host, port, where)
    if text.problem:
        return text.problem
    try:
        out, theirs = _counted(text.body)
    except ValueError:
        return "its /metrics could not be read"
    if app_id not in theirs:
        others = ", ".join(sorted(theirs)) or "none"
        return (
            f"the stack on {where} is another store's "
            f"(app_id {others}; this store's is {app_id}): its counters are not shown"
        )
    return out


@dataclass(frozen=True)
class _Scraped:
    body: str = ""
    problem: str = ""  # why there is no body


def _scrape(host: str, port: int, where: str) -> _Scraped:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=METRICS_TIMEOUT_SECONDS)
    try:
        conn.request("GET", "/metrics")
        answer = conn.getresponse()
        text = answer.read(16 * 1024 * 1024).decode("utf-8", "replace")
        if answer.status != 200:
            return _Scraped(problem=f"{where} answered {answer.status}")
    except OSError as exc:
        return _Scraped(problem=f"no stack answers on {where} ({exc.__class__.__name__})")
    finally:
        conn.close()
    return _Scraped(body=text)


def _counted(text: str) -> tuple[dict[str, dict[str, int]], set[str]]:
    """The COUNTERS per dataset in an exposition, and the app_ids its probe_build_info names."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, int]] = {}
    theirs: set[str] = set()
    for family in text_string_to_metric_families(text):
        if family.name == "probe_build_info":
            theirs |= {sample.labels.get("app_id", "") for sample in family.samples}
        word = COUNTERS.get(family.name)
        for sample in family.samples if word else ():
            if sample.name.endswith("_total") and "dataset" in sample.labels:
                counts = out.setdefault(sample.labels["dataset"], dict.fromkeys(COUNTERS.values(), 0))
                counts[word] += int(sample.value)
    return out, theirs


def _line(counts: dict[str, int], words: dict[str, str]) -> str:
    return "  ".join(f"{words.get(state, state)}={count}" for state, count in counts.items() if count)


@dataclass(frozen=True)
class Report:
    """What `probe status` shows, read once; printed as a table or as JSON."""

    db_path: str
    app_id: str
    configured: list[str]
    rows: list[EventRow]
    totals: dict[str, dict[str, int]]
    counters: dict[str, dict[str, int]] | str  # or why there are none
    verdicts: dict[str, Verdict]


def main(limit: int, as_json: bool, dataset: str | None = None) -> int:
    cfg = load_config_or_exit("probe status", for_reading=True)
    store = _open(cfg)
    if isinstance(store, int):
        return store
    report = read(cfg, store, limit, dataset)
    if isinstance(report, int):
        return report
    (_print_json if as_json else _print_table)(report)
    return ExitStatus.OK


def _open(cfg: Config) -> Store | int:
    if not Path(cfg.db_path).exists():
        store_path = Path(cfg.db_path).resolve()
        print(f"probe status: no store at {store_path} yet ({config_read(cfg)})", file=sys.stderr)
        return ExitStatus.STORE
    try:
        return Store(cfg.db_path, create=False)
    except StoreError as exc:
        print(f"probe status: {exc}", file=sys.stderr)
        return ExitStatus.STORE


def read(cfg: Config, store: Store, limit: int, dataset: str | None) -> Report | int:
    """The report, or ExitStatus.CONFIG (said) for a dataset neither configured nor in the store."""
    rows = figures.recent_events(store, limit, dataset)  # the page's queries too
    totals = figures.totals(store)
    app_id = store.app_id()
    configured = [ds.name for ds in cfg.datasets]
    totals = _shown_totals(totals, configured, dataset)
    if totals is None:
        return ExitStatus.CONFIG
    counters = stack_counters(cfg, app_id)
    if isinstance(counters, dict) and dataset is not None:
        counters = {dataset: counters.get(dataset, {})}
    now = time.time()
    shown = [ds for ds in cfg.datasets if dataset in (None, ds.name)]
    verdicts = {ds.name: figures.dataset_status(cfg, ds, store, now, 0).verdict for ds in shown}
    return Report(cfg.db_path, app_id, configured, rows, totals, counters, verdicts)


def _shown_totals(
    totals: dict[str, dict[str, int]], configured: list[str], dataset: str | None
) -> dict[str, dict[str, int]] | None:
    """The totals of the dataset asked for, or of every one (a configured dataset with no events yet
    still shows, with zeros); None, said, for a dataset neither configured nor in the store."""
    if dataset is None:
        shown = dict(totals)
        for name in configured:
            shown.setdefault(name, {})
        return shown
    if dataset not in configured and dataset not in totals:
        known = ", ".join(sorted(set(configured) | set(totals)))
        print(
            f"probe status: no dataset {dataset!r} in the configuration or the store (known: {known})", file=sys.stderr
        )
        return None
    return {dataset: totals.get(dataset, {})}


def _print_json(r: Report) -> None:
    # The table's words, so that `posted` means one thing in the document: the stack's counter.
    doc = {
        "app_id": r.app_id,
        "db_path": r.db_path,
        "totals": {name: {WORDS.get(k, k): n for k, n in counts.items()} for name, counts in r.totals.items()},
        "totals_scope": STORE_SCOPE,
        "stack_counters": r.counters if isinstance(r.counters, dict) else None,
        "stack_counters_scope": STACK_SCOPE if isinstance(r.counters, dict) else r.counters,
        "verdicts": {name: {"health": v.health, "reason": v.text} for name, v in r.verdicts.items()},
        "events": [{**row.__dict__, "state": WORDS.get(row.state, row.state)} for row in r.rows],
    }
    print(json.dumps(doc, indent=2))


def _print_table(r: Report) -> None:
    print(f"store {r.db_path}  app_id {r.app_id}  datasets {', '.join(r.configured)}")
    print(f"{'dataset':<20}  {'seqno':>8}  {'sent (UTC)':<23}  {'state':<11}  {'latency':>9}  {'copies':>6}  note")
    for row in r.rows:
        sent = datetime.fromtimestamp(row.sent_at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        latency = f"{row.latency * 1000:.1f}ms" if row.latency is not None else "-"
        print(
            f"{row.dataset[:20]:<20}  {row.seqno:>8}  {sent:<23}  {WORDS.get(row.state, row.state):<11}  {latency:>9}  "
            f"{row.receive_count:>6}  {row.post_error or ''}"
        )
    for name, verdict in r.verdicts.items():  # the status page's verdicts, by /readyz's rule
        print(f"verdict {name}: {verdict.health} ({verdict.text})")
    print(f"totals: {STORE_SCOPE}")
    for name, counts in sorted(r.totals.items()):
        print(f"totals {name}: {_line(counts, WORDS)}")
    if isinstance(r.counters, dict):
        print(f"counters: {STACK_SCOPE}")
        for name, counts in sorted(r.counters.items()):
            print(f"counters {name}: {_line(counts, {})}")  # the metrics' own names
    else:
        print(f"counters: {r.counters}")
