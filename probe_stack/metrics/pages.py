"""The status page as the metrics server serves it: to whom (content negotiation), and how often.

`/` gives the page only to a browser that prefers HTML; Prometheus and curl keep the metrics.
Drawing the page reads the store, so it is done by one request at a time and reused for a
second: a burst of page requests costs one read, and scrapes never touch any of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from probe_stack.metrics.status_page import render
from probe_stack.verdict.figures import Snapshot, snapshot
from shared.config import Config
from shared.store import StoreError, StoreReader

log = logging.getLogger("metrics")


def _accept_q(accept: str, wanted: str) -> float:
    """The q the Accept header gives `wanted` (type/subtype), by its most specific matching range."""
    kind = wanted.split("/", 1)[0]
    best, specificity = 0.0, -1
    for part in accept.split(",")[:64]:
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        rank = 2 if media == wanted else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if rank < specificity or rank < 0:
            continue
        q = _quality(params)
        if rank > specificity or q > best:
            best, specificity = q, rank
    return best


def _quality(params: list[str]) -> float:
    """A media range's q parameter (1 when absent, 0 when not a number), within 0..1."""
    q = 1.0
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = min(1.0, max(0.0, float(value)))
            except ValueError:
                q = 0.0
    return q


def wants_html(accept: str | None) -> bool:
    """Whether `/` should give the page: only when Accept prefers text/html to every exposition
    format. Prometheus, curl (*/*) and a scraper with no Accept keep getting the metrics."""
    if not accept:
        return False
    accept = accept[:2048]
    html = _accept_q(accept, "text/html")
    exposition = max(_accept_q(accept, "text/plain"), _accept_q(accept, "application/openmetrics-text"))
    return html > exposition


class Pages:
    """The page for the metrics server: read through its own read-only connection with a bounded
    query time, one render at a time (another request meanwhile gets the last page, or 503), and
    the last page reused for a second. Scrapes never touch any of it."""

    def __init__(
        self,
        cfg: Config,
        counters: Callable[[], dict[str, dict[str, float]]],
        query_seconds: float = 1.0,
        budget: float = 2.0,
    ) -> None:
        self._cfg = cfg
        self._counters = counters
        self._query_seconds = query_seconds
        self._budget = budget
        self._busy = threading.Lock()
        self._reader: StoreReader | None = None
        self._last: tuple[float, bytes] | None = None

    def page(self) -> tuple[int, bytes]:
        if not self._busy.acquire(blocking=False):
            last = self._last
            return (200, last[1]) if last else (503, b"the status page is being drawn; try again\n")
        try:
            now = time.time()
            if self._last and now - self._last[0] < 1.0:
                return 200, self._last[1]
            body = render(self._snapshot(now))
            self._last = (now, body)
            return 200, body
        finally:
            self._busy.release()

    def _snapshot(self, now: float) -> Snapshot:
        try:
            if self._reader is None or self._reader.vanished():
                if self._reader is not None:
                    self._reader.close()
                self._reader = StoreReader(self._cfg.db_path, self._query_seconds)
        except StoreError as exc:
            self._reader = None
            return Snapshot(now, "-", [], str(exc))
        try:
            counters = self._counters()
        except Exception:  # the page goes on without them; /metrics shows the same failure
            log.exception("status page: the counters could not be collected")
            counters = {}
        return snapshot(self._cfg, self._reader, now, self._budget, counters)
