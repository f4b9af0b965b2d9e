"""Logging set-up with a redaction filter on every handler.

Secrets reach log lines in ways nobody plans for (a URL in an exception from
websocket-client, a header in a requests error), so redaction happens on the
final text of every record, exception included, not at the call sites.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from shared.jsonline import json_line

REDACTED = "<redacted>"

_PATTERNS = (
    # webhook_token=..., client_secret=..., access_token=... in URLs and form bodies
    re.compile(r"(?i)((?:webhook_token|client_secret|access_token|refresh_token|token)=)[^&\s'\"]+"),
    # ?api_key=..., &auth=...: in a URL's query, any name with a token, secret, password, key or auth
    # in it (as config.redact_url hides them); not a setting named in a hint, e.g. AUTH_ENABLED=false
    re.compile(r"(?i)([?&][\w.-]*(?:token|secret|passw|key|auth)[\w.-]*=)[^&\s'\"#]+"),
    # the password of user:password@host in a URL, however short (the known-secrets list skips those)
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)"),
    # "access_token": "..." in JSON texts
    re.compile(r"(?i)(\"(?:access_token|refresh_token|client_secret|webhook_token)\"\s*:\s*\")[^\"]*"),
    # Authorization: Bearer <jwt>
    re.compile(r"(?i)(bearer\s+)[-0-9a-z._~+/]+=*"),
)


class Redactor:
    """Removes known secret values and secret-shaped substrings from a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        return text


class RedactingFilter(logging.Filter):
    """Renders message, args and exception once, redacted, so formatters see only clean text."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


# Fields a log call may pass with `extra=`: they become JSON keys (and stay in the text message too).
FIELDS = (
    "dataset",
    "seqno",
    "app_id",
    "reason",
    "status",
    "latency",
    "attempts",
    "duration",
    "count",
    "operation",
    "judged_as",
    "size",
    "differences",
    "suppressed",
)


class RepeatFilter(logging.Filter):
    """At most `burst` lines of one kind per `window` seconds; the rest are counted and summarised.

    A kind is a call site's message template, its level and its dataset: a peer that makes one
    warning per frame (31,070 in a minute were seen) fills neither the log nor the disk, and each
    dataset keeps its own allowance, so a flood on one never hides another's lines. When a kind's
    window ends, the next line of any kind carries the summary first ("N more like this in the
    last M s"), so nothing is dropped silently. Below WARNING nothing is limited: the demo's line
    per event is the point. For every process (it sits on the handler `setup` makes).
    """

    MAX_KINDS = 2000  # kinds come from code templates and dataset names; the bound is a fuse

    def __init__(self, burst: int = 10, window: float = 60.0, clock=time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple, list] = {}  # kind -> [window start, lines this window, suppressed, example]
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "suppressed", None) is not None:
            return True
        now = self.clock()
        if record.levelno < logging.WARNING:
            if now >= self._next_sweep:
                with self._lock:
                    due = self._sweep(now)
                self._emit(due)
            return True
        with self._lock:
            passes, due = self._count(record, now)
        self._emit(due)
        return passes

    def _count(self, record: logging.LogRecord, now: float) -> tuple[bool, list[logging.LogRecord]]:
        """Count a warning or worse under its kind (with the lock held): whether it passes, and the
        summaries now due."""
        kind = (record.name, record.levelno, str(record.msg)[:200], getattr(record, "dataset", None))
        due = self._sweep(now) if now >= self._next_sweep else []
        state = self._kinds.get(kind)
        if state is None or now - state[0] >= self.window:
            if state is not None and state[2]:
                due.append(self._summary(state, now))
            if state is None and len(self._kinds) >= self.MAX_KINDS:
                due += self._sweep(now, everything=True)
            state = self._kinds[kind] = [now, 0, 0, record]
        state[1] += 1
        passes = state[1] <= self.burst
        if not passes:
            state[2] += 1
            state[3] = record
        return passes, due

    def flush(self) -> None:
        """Summarise what is still held back (at a process's end: nothing goes unsaid)."""
        with self._lock:
            due = self._sweep(self.clock(), everything=True)
        self._emit(due)

    @staticmethod
    def _emit(summaries: list[logging.LogRecord]) -> None:
        for summary in summaries:
            logging.getLogger(summary.name).handle(summary)

    def _sweep(self, now: float, everything: bool = False) -> list[logging.LogRecord]:
        """Summaries of the kinds whose window ended (all of them when the table is full)."""
        self._next_sweep = now + min(1.0, self.window)
        out = []
        for kind, state in list(self._kinds.items()):
            if everything or now - state[0] >= self.window:
                if state[2]:
                    out.append(self._summary(state, now))
                del self._kinds[kind]
        return out

    def _summary(self, state: list, now: float) -> logging.LogRecord:
        last: logging.LogRecord = state[3]
        count = state[2]
        state[2] = 0
        summary = logging.makeLogRecord(
            {**last.__dict__, "suppressed": count, "exc_info": None, "exc_text": None, "stack_info": None}
        )
        summary.msg = f"{count} more like this in the last {min(now - state[0], self.window):.0f}s: {last.getMessage()}"
        summary.args = None
        return summary


def flush_repeats() -> None:
    """Log the summaries the root handlers' RepeatFilters still hold (call before a process ends)."""
    for handler in logging.getLogger().handlers:
        for each in handler.filters:
            if isinstance(each, RepeatFilter):
                each.flush()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
        if record.exc_text:
            fields["exc"] = record.exc_text
        return json_line(record.levelname, record.name, record.getMessage(), record.created, **fields)


def setup(process: str, fmt: str = "text", level: str = "INFO", secrets: Iterable[str] = ()) -> Redactor:
    """Configure the root logger for one process; returns the redactor for other outputs."""
    redact = Redactor(secrets)
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RepeatFilter())  # first: it keys on the message's template, before redaction renders it
    atexit.register(flush_repeats)  # every process says what it held back, the sender's included
    handler.addFilter(RedactingFilter(redact))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 logs full URLs at DEBUG; keep it quiet unless asked for.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
    return redact


class DatasetLog(logging.LoggerAdapter):
    """The listener's log with the dataset in every line: one process holds many subscriptions."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).setdefault("dataset", self.extra["dataset"])
        return f"[{self.extra['dataset']}] {msg}", kwargs

    def __init__(self, logger: logging.Logger, dataset: str) -> None:
        super().__init__(logger, {"dataset": dataset})
