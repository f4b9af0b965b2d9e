"""Validation: what no single row can say. Global rules between settings, and one validator every
dataset passes (the single-dataset form is a list of one by now, so nothing here asks which form
was written). Each raises a one-line ConfigError naming the key or variable the operator wrote.

A value's type and bounds are its row's (schema); a rule here is one that involves another
setting, a file, or the machine.
"""

from __future__ import annotations

import json
import re
import socket
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared.config.datasets import Entry, Place
from shared.config.fields import ConfigError
from shared.config.schema import BY_NAME, FIELDS, Config
from shared.config.sources import MAX_CONFIG_FILE_BYTES
from shared.small_file import read_small

LABEL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # PROBE_GROUP, PROBE_LOCATION
# The placeholders of probe.env.example: a value still set to one was never filled in.
PLACEHOLDERS = frozenset({"replace-me", "your-client-id", "your-dataset-id"})

Fail = Callable[[str, str], ConfigError]


def failer(origin: Mapping[str, str]) -> Fail:
    """fail(setting, message): the error naming the setting as the operator wrote it, and where."""

    def fail(name: str, message: str) -> ConfigError:
        field = BY_NAME[name]
        where = origin.get(name, "default")
        return ConfigError(f"{field.yaml if where.startswith('in ') else field.env} ({where}): {message}")

    return fail


def validate(cfg: Config, entries: tuple[Entry, ...], config_path: Path, for_reading: bool) -> None:
    """Every rule, in the order an operator fixes things: what is missing, then what disagrees."""
    fail = failer(cfg.origin)
    if not cfg.keycloak_realm:
        raise fail("keycloak_realm", "must not be empty; set KEYCLOAK_REALM")
    check_paths(cfg, fail, config_path)
    if not for_reading:
        check_required(cfg, entries)
    global_rules(cfg, fail)
    for entry in entries:
        check_dataset(cfg, entry.dataset, entry.place, for_reading)
    check_values(cfg, fail)


def check_values(cfg: Config, fail: Fail) -> None:
    """What a value must be beyond its row's type and bounds: filled in, a readable file, an
    address of this machine, a usable template, a label value."""
    for f in FIELDS:
        value = getattr(cfg, f.name)
        if isinstance(value, str) and value in PLACEHOLDERS:
            raise fail(f.name, "is still the placeholder of probe.env.example; fill in the real value")
    check_sampling_rules(cfg, fail)
    check_metrics_host(cfg, fail)
    if not _placeholders_allowed(cfg.collector_url):  # the template entries of a list inherit, used or not
        raise fail("collector_url", "only the placeholders {dataset_id} and {version} are allowed")
    for name in ("group", "location"):
        value = getattr(cfg, name)
        if value and not LABEL_VALUE.fullmatch(value):
            raise fail(
                name,
                f"{value[:40]!r} is not usable: letters, digits and . _ - only, at most 100, starting with a "
                "letter or digit (it is a label value and a field of every event)",
            )


def check_required(cfg: Config, entries: tuple[Entry, ...]) -> None:
    """Every setting a run needs and nobody gave, in one line (the datasets' and the token's)."""
    missing = [f for entry in entries for f in entry.place.unset(entry.dataset)]
    if cfg.auth_enabled:
        missing += [
            BY_NAME[name] for name in ("client_id", "client_secret", "keycloak_server") if not getattr(cfg, name)
        ]
    if missing:
        names = ", ".join(f.env + (f" (or {f.file_env})" if f.file_env else "") for f in missing)
        hint = "; or AUTH_ENABLED=false for a collector without auth" if cfg.auth_enabled else ""
        raise ConfigError(f"missing for ORIGO_ENVIRONMENT={cfg.environment}: {names}{hint} (the demo: make run)")


def global_rules(cfg: Config, fail: Fail) -> None:
    """Rules between top-level settings (a new one goes here): the timeouts must nest, a pong within
    a ping, a loss after a post, a prune after a loss."""
    if cfg.pong_timeout_seconds >= cfg.ping_interval_seconds:
        raise fail("pong_timeout_seconds", "must be smaller than the ping interval (PING_INTERVAL_SECONDS)")
    if cfg.loss_timeout_seconds <= cfg.post_timeout_seconds:
        raise fail(
            "loss_timeout_seconds",
            "must exceed POST_TIMEOUT_SECONDS, or an event still being posted would be judged",
        )
    if cfg.retention_seconds <= cfg.loss_timeout_seconds:
        raise fail("retention_seconds", "must exceed LOSS_TIMEOUT_SECONDS, or events are pruned before judged")


def check_dataset(cfg: Config, ds: Any, place: Place, for_reading: bool = False) -> None:
    """One dataset, whichever form it was written in; `place` names it in the error."""
    keys = ("id", "version", "collector_url", "websocket_url")
    for key in keys if for_reading else ("id", "version", "webhook_token", *keys[2:]):
        error = None if getattr(ds, key) else place.missing(key)
        if error:
            raise error
        if getattr(ds, key) in PLACEHOLDERS:
            raise ConfigError(
                f"{place.subject(key)}is still the placeholder of probe.env.example; fill in the real value"
            )
    if not _placeholders_allowed(ds.collector_url):
        raise ConfigError(
            f"{place.name('collector_url')}: only the placeholders {{dataset_id}} and {{version}} are allowed"
        )
    if ds.loss_timeout_seconds <= cfg.post_timeout_seconds:
        raise ConfigError(
            f"{place.subject('loss_timeout_seconds')}must exceed POST_TIMEOUT_SECONDS, "
            "or an event still being posted would be judged"
        )
    if cfg.retention_seconds <= ds.loss_timeout_seconds:
        raise ConfigError(
            f"{place.subject('loss_timeout_seconds')}must be below RETENTION_SECONDS, or events are pruned first"
        )
    if ds.payload_bytes > cfg.max_message_bytes:
        raise ConfigError(
            f"{place.name('payload_bytes')} = {ds.payload_bytes}: the listener refuses messages over MAX_MESSAGE_BYTES "
            f"({cfg.max_message_bytes}); pad less or raise MAX_MESSAGE_BYTES"
        )


def _placeholders_allowed(template: str) -> bool:
    """Whether a collector URL template names no placeholder but {dataset_id} and {version}."""
    try:
        placeholders = {p for _, p, _, _ in string.Formatter().parse(template) if p is not None}
    except ValueError:
        return False
    return placeholders <= {"dataset_id", "version"}


def check_paths(cfg: Config, fail: Fail, config_path: Path) -> None:
    """The store must be a file, and the metrics directory (emptied at every start) must hold nothing else."""
    if not cfg.db_path or cfg.db_path == ":memory:" or cfg.db_path.startswith("file:"):
        raise fail("db_path", "must be the path of a file on local disk, shared by sender and listener")
    if not cfg.metrics_dir:
        raise fail("metrics_dir", "must not be empty: it is a directory the probe empties at every start")
    metrics = Path(cfg.metrics_dir).resolve()
    store = Path(cfg.db_path).resolve()
    for what, path in (("the store", store), ("the configuration file", config_path.resolve())):
        if metrics == path or metrics in path.parents:
            raise fail(
                "metrics_dir",
                f"must not contain {what} ({path}): it is emptied at every start; use a directory of its own",
            )


def check_sampling_rules(cfg: Config, fail: Fail) -> None:
    if not cfg.xray_sampling_rules:
        return
    try:
        rules = json.loads(read_small(cfg.xray_sampling_rules, MAX_CONFIG_FILE_BYTES))
    except (OSError, ValueError, RecursionError):
        rules = None
    if not isinstance(rules, dict):
        raise fail("xray_sampling_rules", "must name a readable JSON file of X-Ray local sampling rules")


def check_metrics_host(cfg: Config, fail: Fail) -> None:
    try:
        from shared.resolve import LOOKUP_SECONDS, resolve

        resolve(cfg.metrics_host, 0, within=LOOKUP_SECONDS)  # a silent DNS server never hangs a start
    except (socket.gaierror, UnicodeError):
        raise fail("metrics_host", f"{cfg.metrics_host!r} is not an address of this machine") from None
