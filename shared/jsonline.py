"""One JSON log line: its own module, with nothing but the standard library, because the stack's
watcher (probe_stack/runtime/watch.py) writes such lines too and should load nothing else."""

from __future__ import annotations

import json
import re
import time
from enum import Enum

# supervisord's own lines: "2026-11-30 14:08:35,931 CRIT Supervisor is running as root. ..."
_SUPERVISORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (CRIT|ERRO|WARN|INFO|DEBG|TRAC|BLAT) (.*)$")
_LEVELS = {"CRIT": "CRITICAL", "ERRO": "ERROR", "WARN": "WARNING", "INFO": "INFO"}


def json_line(level: str, logger: str, msg: str, created: float | None = None, **fields: object) -> str:
    """One JSON log line, as every process and `probe run` write them with LOG_FORMAT=json."""
    created = time.time() if created is None else created
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
    doc: dict[str, object] = {"ts": stamp, "level": level, "logger": logger, "msg": msg}
    doc.update({k: (v.value if isinstance(v, Enum) else v) for k, v in fields.items() if v is not None})
    return json.dumps(doc)


def as_json_line(line: str) -> str:
    """A line of the stack's output as a JSON log line: one already JSON (an object) as it is;
    supervisord's own (its level kept) or any other text (a traceback, a library's print)
    wrapped, so that a JSON log pipeline never meets a line it cannot parse."""
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            if isinstance(json.loads(text), dict):
                return text
        except ValueError:
            pass
    match = _SUPERVISORD.match(text)
    if match:
        return json_line(_LEVELS.get(match.group(1), "DEBUG"), "supervisord", match.group(2))
    return json_line("INFO", "output", text)
