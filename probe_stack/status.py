"""`probe status`: what the store says about the newest events, for an operator at 3 a.m."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from shared.exits import ExitStatus
from shared.lifecycle import load_config_or_exit
from shared.store import Store, StoreError


def main(limit: int, as_json: bool, dataset: str | None = None) -> int:
    cfg = load_config_or_exit()
    if not Path(cfg.db_path).exists():
        print(f"probe status: no store at {cfg.db_path} yet; has the probe run? (PROBE_DB_PATH)", file=sys.stderr)
        return ExitStatus.STORE
    try:
        store = Store(cfg.db_path, create=False)
    except StoreError as exc:
        print(f"probe status: {exc}", file=sys.stderr)
        return ExitStatus.STORE
    rows = store.recent_events(limit, dataset)
    totals = store.totals()
    app_id = store.app_id()
    configured = [ds.name for ds in cfg.datasets]
    if dataset is not None:
        if dataset not in configured and dataset not in totals:
            known = ", ".join(sorted(set(configured) | set(totals)))
            print(
                f"probe status: no dataset {dataset!r} in the configuration or the store (known: {known})",
                file=sys.stderr,
            )
            return ExitStatus.CONFIG
        totals = {dataset: totals.get(dataset, {})}
    else:
        for name in configured:  # a configured dataset with no events yet still shows, with zeros
            totals.setdefault(name, {})
    if as_json:
        doc = {
            "app_id": app_id,
            "db_path": cfg.db_path,
            "totals": totals,
            "events": [row.__dict__ for row in rows],
        }
        print(json.dumps(doc, indent=2))
        return ExitStatus.OK
    print(f"store {cfg.db_path}  app_id {app_id}  datasets {', '.join(configured)}")
    print(f"{'dataset':<20}  {'seqno':>8}  {'sent (UTC)':<23}  {'state':<11}  {'latency':>9}  {'copies':>6}  note")
    for row in rows:
        sent = datetime.fromtimestamp(row.sent_at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        latency = f"{row.latency * 1000:.1f}ms" if row.latency is not None else "-"
        print(
            f"{row.dataset[:20]:<20}  {row.seqno:>8}  {sent:<23}  {row.state:<11}  {latency:>9}  "
            f"{row.receive_count:>6}  {row.post_error or ''}"
        )
    for name, counts in sorted(totals.items()):
        print(f"totals {name}: " + "  ".join(f"{state}={count}" for state, count in counts.items() if count))
    return ExitStatus.OK
