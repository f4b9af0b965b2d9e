"""Logging set-up with a redaction filter on every handler.

Secrets reach log lines in ways nobody plans for (a URL in an exception from
websocket-client, a header in a requests error), so redaction happens on the
final text of every record, exception included, not at the call sites.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

from shared.jsonline import json_line

REDACTED = "<redacted>"

_PATTERNS = (
    # webhook_token=..., client_secret=..., access_token=... in URLs and form bodies
    re.compile(r"(?i)((?:webhook_token|client_secret|access_token|refresh_token|token)=)[^&\s'\"]+"),
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
)


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
