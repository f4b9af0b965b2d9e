"""`probe run`'s and `probe ctl`'s own lines for the operator, on stderr: plain, or JSON with LOG_FORMAT=json.

One switch for the process: `probe run` turns JSON on once it has read the configuration;
`probe ctl` never does.
"""

from __future__ import annotations

import sys

from shared import log as log_mod

_json_output = False  # LOG_FORMAT=json: our own lines are JSON too


def use_json(on: bool) -> None:
    global _json_output
    _json_output = on


def json_output() -> bool:
    return _json_output


def say(text: str, level: str = "ERROR") -> None:
    """A line of `probe run` for the operator, on stderr: plain, or JSON with LOG_FORMAT=json."""
    print(log_mod.json_line(level, "run", text) if _json_output else text, file=sys.stderr, flush=True)
