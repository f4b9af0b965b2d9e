"""The alert rules' parameters: deploy/prometheus/alert-params.yaml, read and checked whole.

PromQL cannot take parameters, and windows and `for` durations cannot come from a series, so
the rules are generated from this one file of them: every parameter must be there and known,
durations must be Prometheus's, numbers must not be negative.
"""

from __future__ import annotations

import re
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DURATION = re.compile(r"^(\d+(ms|s|m|h|d))+$")
# Parameters an operator may leave empty: the runbook's address, until the repository is browsable
# somewhere (a made-up URL would be a link to nowhere at 3 a.m.).
OPTIONAL_TEXT = frozenset({"runbook_url"})


class ParamsError(Exception):
    """The parameters file is wrong; str() names the key."""


@dataclass(frozen=True)
class AlertParams:
    selector: str
    runbook_url: str
    probe_down_for: str
    not_subscribed_for: str
    stale_after_seconds: float
    stale_for: str
    loss_window: str
    loss_ratio: float
    loss_for: str
    blind_window: str
    blind_ratio: float
    blind_for: str
    latency_window: str
    latency_p99_seconds: float
    latency_for: str
    slo_latency_seconds: float
    slo_objective: float
    burn_fast_long_window: str
    burn_fast_short_window: str
    burn_fast_factor: float
    burn_fast_for: str
    burn_slow_long_window: str
    burn_slow_short_window: str
    burn_slow_factor: float
    burn_slow_for: str
    post_error_window: str
    post_error_ratio: float
    post_error_for: str
    token_error_window: str
    token_errors: int
    token_error_for: str
    fail_out_window: str
    fail_outs: int
    skipped_window: str
    skipped_slots: int
    clock_step_window: str
    malformed_window: str
    corrupted_window: str
    wrong_appid_window: str
    unwatched_for: str


def load_params(path: Path, overrides: dict[str, Any] | None = None) -> AlertParams:
    """Read every parameter from `path` (none may be missing or unknown), then apply overrides."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    doc.update(overrides or {})
    names = {f.name: f for f in fields(AlertParams)}
    unknown = sorted(set(doc) - set(names))
    missing = sorted(set(names) - set(doc))
    if unknown:
        raise ParamsError(f"{path}: unknown parameter(s) {', '.join(unknown)}")
    if missing:
        raise ParamsError(f"{path}: missing parameter(s) {', '.join(missing)}")
    values = {name: _value(field, doc[name]) for name, field in names.items()}
    if not 0 < values["slo_objective"] < 1:
        raise ParamsError(f"slo_objective: expected a share between 0 and 1, got {values['slo_objective']!r}")
    return AlertParams(**values)


def _value(field: Field, raw: Any) -> Any:
    """One parameter's value, checked against its field's type; ParamsError names it."""
    if field.type != "str":
        return _number(field.name, int if field.type == "int" else float, raw)
    return _text(field.name, raw)


def _number(name: str, kind: type, raw: Any) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
        raise ParamsError(f"{name}: expected a number >= 0, got {raw!r}")
    return kind(raw)


def _text(name: str, raw: Any) -> str:
    if name in OPTIONAL_TEXT and raw in (None, ""):
        return ""
    if not isinstance(raw, str) or not raw:
        raise ParamsError(f"{name}: expected a non-empty text, got {raw!r}")
    if (name.endswith("_for") or name.endswith("_window")) and not DURATION.match(raw):
        raise ParamsError(f"{name}: expected a Prometheus duration such as 5m or 1h, got {raw!r}")
    return raw
