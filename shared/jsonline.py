"""One JSON log line: its own module, with nothing but the standard library, because the stack's
watcher (probe_stack/watch.py) writes such lines too and should load nothing else."""

from __future__ import annotations

import json
import time
from enum import Enum


def json_line(level: str, logger: str, msg: str, created: float | None = None, **fields: object) -> str:
    """One JSON log line, as every process and `probe run` write them with LOG_FORMAT=json."""
    created = time.time() if created is None else created
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
    doc: dict[str, object] = {"ts": stamp, "level": level, "logger": logger, "msg": msg}
    doc.update({k: (v.value if isinstance(v, Enum) else v) for k, v in fields.items() if v is not None})
    return json.dumps(doc)
