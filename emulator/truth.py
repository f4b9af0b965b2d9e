"""The emulator's ground truth: every accepted event and every subscriber, as it happened.

Tests and benchmarks judge the probe against these records, never against the probe's own view;
`GET /_emulator/truth` serves them as JSON.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Record:
    """Ground truth of one accepted event."""

    index: int
    dataset: str
    version: str
    event: dict
    accepted_at: float
    trace_header: str | None = None  # the X-Amzn-Trace-Id the post carried, as the platform would see it
    fate: str = "pending"  # delivered / dropped / held (paused, not yet delivered)
    delays_ms: list[float] = field(default_factory=list)  # one per copy
    writes: list[tuple[int, float]] = field(default_factory=list)  # (subscriber id, time)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (subscriber id, why not written)
    corrupted: list[int] = field(default_factory=list)  # which copies (0, 1) went out altered

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "dataset": self.dataset,
            "version": self.version,
            "app_id": self.event.get("app_id"),
            "seqno": self.event.get("seqno"),
            "accepted_at": self.accepted_at,
            "trace_header": self.trace_header,
            "fate": self.fate,
            "copies": len(self.delays_ms) if self.fate != "dropped" else 0,
            "delays_ms": self.delays_ms,
            "writes": [{"subscriber": s, "at": t} for s, t in self.writes],
            "skipped": [{"subscriber": s, "why": w} for s, w in self.skipped],
            "corrupted_copies": self.corrupted,
        }


@dataclass
class Subscriber:
    id: int
    dataset: str
    connected_at: float
    tag: str = ""  # ?subscriber=: which location it is, for refuse_subscriber
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    ws: web.WebSocketResponse | None = None
    closed_at: float | None = None
    close_code: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "connected_at": self.connected_at,
            "closed_at": self.closed_at,
            "close_code": self.close_code,
        }
