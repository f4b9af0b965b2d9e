"""All configuration parsing and validation: probe.yaml plus environment overrides.

One table (FIELDS) says, for every setting, its YAML key, its environment variable,
its type, its default and whether it is a secret. Everything else (parsing, the
one-line errors, `probe config check`, the README table) is derived from it, so a
setting cannot be documented in one place and parsed differently in another.

Precedence, highest first: environment variable, YAML file, the preset of the
selected environment (local/dev/prod), the built-in default.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import socket
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from shared import shard as shard_mod
from shared.contract import (  # noqa: F401  re-exported for config's callers
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    LOCAL_EMULATOR_PORT,
    LOCAL_WEBHOOK_TOKEN,
    MAX_EVENT_BYTES,
    PRESETS,
    REALM,
)
from shared.small_file import NotSmallFile, read_small

DEFAULT_CONFIG_PATH = "probe.yaml"
DEFAULT_ENVIRONMENT = "dev"
REDACTED = "<redacted>"

MAX_DATASETS = 200

DEFAULT_LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
    180.0,
    300.0,
)


_SECRET_QUERY = ("token", "secret", "password", "key", "auth")


def redact_url(url: str) -> str:
    """A URL with its password and any token-like query values replaced, for showing."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None or parts.username is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{REDACTED}@{host}"
    query = urlencode(
        [
            (k, REDACTED if any(s in k.lower() for s in _SECRET_QUERY) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="<>",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# Characters RFC 3986 never allows unescaped, on which URL parsers disagree: urllib.parse reads the
# host of `http://foreign\@allowed/` as `allowed`, urllib3 (which connects) as `foreign`.
AMBIGUOUS_URL = re.compile(r"[\\\s\x00-\x1f\x7f]")


def _url_password(url: str) -> str:
    """The password a URL carries (user:password@host), or "": a secret like any other."""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def url_host(url: str) -> str:
    """The host of a URL as an allow-list names it: `name`, or `name:port` when the URL gives a port
    (lower case; never the user or password). "" when the URL has none."""
    try:
        parts = urlsplit(url)
        name, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return ""
    if ":" in name:
        name = f"[{name}]"
    return f"{name}:{port}" if name and port is not None else name


def config_read(cfg: Config) -> str:
    """Which configuration a reading command used, for its line when it finds no store or stack: an
    operator who forgot the stack's PROBE_CONFIG (the demo's) reads another one's, and is told so."""
    read = cfg.config_file or "no configuration file (defaults and environment)"
    return f"read {read}: is that the stack's? Its banner prints the command, PROBE_CONFIG and all"


class ConfigError(Exception):
    """A setting is wrong; str() is the one line shown to the operator."""


@dataclass(frozen=True)
class Dataset:
    """One dataset the probe watches: one schedule in the sender, one subscription in the listener.

    `name` is its key in the store and its `dataset` label; it defaults to the dataset id, so
    the single-dataset form keeps the series and the store rows it always had.
    """

    name: str
    id: str
    version: str
    interval_seconds: float
    webhook_token: str
    collector_url: str  # template with {dataset_id} and {version}
    websocket_url: str
    loss_timeout_seconds: float
    payload_bytes: int

    def collector_endpoint(self) -> str:
        return self.collector_url.format(dataset_id=self.id, version=self.version)

    def posts_a_list(self) -> bool:
        """The collector's `/events/` endpoint takes a list of events, `/event/` one event."""
        return "/events/" in urlsplit(self.collector_url).path

    def redacted(self) -> dict[str, Any]:
        shown = {k: getattr(self, k) for k in DATASET_KEYS if k != "webhook_token_file"}
        shown["webhook_token"] = REDACTED if self.webhook_token else ""
        shown["collector_url"] = redact_url(self.collector_url)
        shown["websocket_url"] = redact_url(self.websocket_url)
        return shown


# The keys of one entry of `datasets:` in probe.yaml, with the setting each one defaults to.
DATASET_KEYS: dict[str, str] = {
    "name": "",
    "id": "dataset_id",
    "version": "dataset_version",
    "interval_seconds": "event_interval_seconds",
    "webhook_token": "webhook_token",
    "webhook_token_file": "",
    "collector_url": "collector_url",
    "websocket_url": "websocket_url",
    "loss_timeout_seconds": "loss_timeout_seconds",
    "payload_bytes": "payload_bytes",
}
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,99}")
LABEL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # PROBE_GROUP, PROBE_LOCATION


@dataclass(frozen=True)
class Config:
    environment: str
    dataset_id: str
    dataset_version: str
    collector_url: str
    websocket_url: str
    webhook_token: str
    collector_token_hosts: str
    auth_enabled: bool
    keycloak_server: str
    keycloak_realm: str
    client_id: str
    client_secret: str
    authorizer_api: str
    xray_enabled: bool
    xray_service_name: str
    xray_sampling_rules: str
    event_interval_seconds: float
    payload_bytes: int
    max_consecutive_errors: int
    post_timeout_seconds: float
    post_concurrency: int
    token_refresh_margin_seconds: float
    startup_wait_seconds: float
    loss_timeout_seconds: float
    missing_grace_seconds: float
    ping_interval_seconds: float
    pong_timeout_seconds: float
    reconnect_max_seconds: float
    max_message_bytes: int
    latency_buckets: tuple[float, ...]
    retention_seconds: float
    db_path: str
    metrics_dir: str
    metrics_host: str
    metrics_port: int
    ready_max_post_age_seconds: float
    log_format: str
    log_level: str
    log_events: bool
    group: str
    location: str
    shard: str
    # Not settings: what loading found out, for `probe config check` and `probe run`.
    origin: Mapping[str, str] = dc_field(default_factory=dict, compare=False)
    config_file: str = ""  # the YAML file read, or "" when none was
    warnings: tuple[str, ...] = ()
    # The datasets watched: the `datasets:` list (this shard's part of it), or one made of the
    # top-level settings.
    datasets: tuple[Dataset, ...] = ()
    # The whole list, every shard's (the same as `datasets` when the instance is not sharded).
    configured: tuple[Dataset, ...] = ()

    def collector_endpoint(self) -> str:
        return self.collector_url.format(dataset_id=self.dataset_id, version=self.dataset_version)

    def token_hosts(self) -> tuple[str, ...]:
        """The hosts the bearer token may be sent to (COLLECTOR_TOKEN_HOSTS; by default the host of
        COLLECTOR_URL): never to one that only a dataset entry or a redirect names."""
        listed = [h.strip().lower() for h in self.collector_token_hosts.split(",") if h.strip()]
        return tuple(listed) or tuple(h for h in (url_host(self.collector_url),) if h)

    def token_allowed(self, url: str) -> bool:
        """Whether the bearer token may go to `url`: its host is on token_hosts(), as `name` (any
        port) or as `name:port` (that port only)."""
        if AMBIGUOUS_URL.search(url):  # its host depends on who reads it: none is allowed
            return False
        try:
            name = (urlsplit(url).hostname or "").lower()
        except ValueError:
            return False
        return bool(name) and any(entry in (url_host(url), name) for entry in self.token_hosts())

    def subscription_fresh_seconds(self) -> float:
        """How recent a subscription's heartbeat must be for it to count as open: a ping, its
        pong timeout and a margin (readiness, the sender's start and `probe check` agree)."""
        return self.ping_interval_seconds + self.pong_timeout_seconds + 2

    def siblings(self, ds: Dataset) -> frozenset[str]:
        """The other entries on `ds`'s dataset id: its subscription sees their events too."""
        return frozenset(d.name for d in self.datasets if d.id == ds.id and d.name != ds.name)

    def secrets(self) -> list[str]:
        """Values that must never be printed (fed to the log redaction filter)."""
        values = [getattr(self, f.name) for f in FIELDS if f.secret and getattr(self, f.name)]
        urls = [self.collector_url, self.websocket_url, self.keycloak_server]
        urls += [u for d in self.datasets for u in (d.collector_url, d.websocket_url)]
        passwords = [p for p in map(_url_password, urls) if p]
        return values + [d.webhook_token for d in self.datasets if d.webhook_token] + passwords

    def redacted(self) -> dict[str, Any]:
        """Every setting as `probe config check` shows it: secrets hidden, credentials cut out of URLs."""
        shown: dict[str, Any] = {}
        for f in FIELDS:
            value = getattr(self, f.name)
            if f.secret and value:
                value = REDACTED
            elif f.kind == "url" or f.name == "authorizer_api":
                value = redact_url(value)
            shown[f.name] = value
        shown["datasets"] = [d.redacted() for d in self.datasets]
        return shown


# ---- value parsers: each takes a raw value (str from env, anything from YAML) ----


def _number(raw: Any, *, integer: bool) -> float | int:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, (int, float)):
        value = raw
    elif isinstance(raw, str):
        value = int(raw.strip()) if integer else float(raw.strip())
    else:
        raise ValueError
    if integer and (not isinstance(value, int) and not float(value).is_integer()):
        raise ValueError
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError
    return int(value) if integer else float(value)


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def _text(raw: Any) -> str:
    # A YAML float would be rewritten (version: 1.10 becomes "1.1"): ask for a quoted string.
    if isinstance(raw, (dict, list, bool, float)) or raw is None:
        raise ValueError
    return str(raw).strip()


def _buckets(raw: Any) -> tuple[float, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError
    values = tuple(float(_number(v, integer=False)) for v in items)
    if any(v <= 0 for v in values) or list(values) != sorted(set(values)):
        raise ValueError
    return values


@dataclass(frozen=True)
class Field:
    name: str
    yaml: str  # dotted path in probe.yaml
    env: str
    kind: str  # float, int, bool, str, choice, url, buckets
    default: Any
    help: str
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    choices: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()
    file_env: str = ""  # env var naming a file that holds the value (secrets)

    def expected(self) -> str:
        if self.kind in ("float", "int"):
            what = "a whole number" if self.kind == "int" else "a number (fractions allowed)"
            if self.minimum is not None:
                what += f" {'>' if self.exclusive_min else '>='} {_plain(self.minimum)}"
            if self.maximum is not None:
                what += f" and <= {_plain(self.maximum)}"
            return what
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "url":
            schemes = " or ".join(f"{s}://" for s in self.schemes)
            return f"a URL starting with {schemes} (no backslash, space or control character)"
        if self.kind == "buckets":
            return "an increasing list of positive seconds, e.g. 0.05,0.1,0.5,1"
        return 'a text (in YAML, quote numbers: "1.10")'

    def parse(self, raw: Any) -> Any:
        """Convert and check one raw value; ValueError means 'not what is expected'."""
        if self.kind in ("float", "int"):
            value = _number(raw, integer=self.kind == "int")
            low_bad = self.minimum is not None and (
                value <= self.minimum if self.exclusive_min else value < self.minimum
            )
            if low_bad or (self.maximum is not None and value > self.maximum):
                raise ValueError
            return value
        if self.kind == "bool":
            return _bool(raw)
        if self.kind == "buckets":
            return _buckets(raw)
        value = _text(raw)
        if self.kind == "choice" and value not in self.choices:
            raise ValueError
        if self.kind == "url" and value:
            parts = urlsplit(value)
            if parts.scheme not in self.schemes or not parts.netloc or AMBIGUOUS_URL.search(value):
                raise ValueError
        return value


def _plain(value: float) -> str:
    """A bound as an operator writes it: 1048576, not 1.04858e+06."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _f(name: str, yaml_key: str, env: str, kind: str, default: Any, help: str, **kw: Any) -> Field:
    return Field(name, yaml_key, env, kind, default, help, **kw)


FIELDS: tuple[Field, ...] = (
    _f(
        "environment",
        "environment",
        "ORIGO_ENVIRONMENT",
        "choice",
        "dev",
        "Which platform: `dev` or `prod` (the contract's URLs), or `local` (the emulator, with demo credentials).",
        choices=("local", "dev", "prod"),
    ),
    _f("dataset_id", "dataset.id", "DATASET_ID", "str", "probe-dataset", "Dataset the events are posted to."),
    _f("dataset_version", "dataset.version", "DATASET_VERSION", "str", "1", "Dataset version (a string)."),
    _f(
        "collector_url",
        "collector.url",
        "COLLECTOR_URL",
        "url",
        None,
        "Collector URL template with `{dataset_id}` and `{version}`; default from the environment.",
        schemes=("http", "https"),
    ),
    _f(
        "collector_token_hosts",
        "collector.token_hosts",
        "COLLECTOR_TOKEN_HOSTS",
        "str",
        "",
        "Comma-separated hosts (`name` or `name:port`) the bearer token may be sent to; default: the host "
        "of `collector.url`. A dataset whose collector is elsewhere posts without the token (logged at start).",
    ),
    _f(
        "post_timeout_seconds",
        "collector.post_timeout_seconds",
        "POST_TIMEOUT_SECONDS",
        "float",
        10.0,
        "Deadline of one post including its retries.",
        minimum=0,
        exclusive_min=True,
        maximum=300,
    ),
    _f(
        "post_concurrency",
        "collector.max_in_flight",
        "POST_CONCURRENCY",
        "int",
        8,
        "Posts allowed in flight at once (a hanging collector never delays the schedule).",
        minimum=1,
        maximum=256,
    ),
    _f(
        "websocket_url",
        "websocket.url",
        "WEBSOCKET_URL",
        "url",
        None,
        "Websocket subscription URL (without query); default from the environment.",
        schemes=("ws", "wss"),
    ),
    _f(
        "webhook_token",
        "websocket.webhook_token",
        "WEBHOOK_TOKEN",
        "str",
        None,
        "Read token of the dataset's subscription.",
        secret=True,
        file_env="WEBHOOK_TOKEN_FILE",
    ),
    _f(
        "ping_interval_seconds",
        "websocket.ping_interval_seconds",
        "PING_INTERVAL_SECONDS",
        "float",
        10.0,
        "How often the listener pings.",
        minimum=0,
        exclusive_min=True,
        maximum=3600,
    ),
    _f(
        "pong_timeout_seconds",
        "websocket.pong_timeout_seconds",
        "PONG_TIMEOUT_SECONDS",
        "float",
        5.0,
        "A pong missing this long marks the connection dead (must be < ping interval).",
        minimum=0,
        exclusive_min=True,
        maximum=3600,
    ),
    _f(
        "reconnect_max_seconds",
        "websocket.reconnect_max_seconds",
        "RECONNECT_MAX_SECONDS",
        "float",
        30.0,
        "Cap of the reconnect backoff.",
        minimum=0.1,
        maximum=3600,
    ),
    _f(
        "max_message_bytes",
        "websocket.max_message_bytes",
        "MAX_MESSAGE_BYTES",
        "int",
        65536,
        "A message larger than this is counted malformed (a larger frame is refused unread).",
        minimum=1024,
        maximum=64 * 1024 * 1024,
    ),
    _f(
        "auth_enabled",
        "auth.enabled",
        "AUTH_ENABLED",
        "bool",
        True,
        "Fetch a Keycloak token for the collector; off for collectors that need none.",
    ),
    _f(
        "keycloak_server",
        "auth.keycloak_server",
        "KEYCLOAK_SERVER",
        "url",
        None,
        "Keycloak server URL including `/auth`; default from the environment.",
        schemes=("http", "https"),
    ),
    _f("keycloak_realm", "auth.realm", "KEYCLOAK_REALM", "str", REALM, "Keycloak realm."),
    _f("client_id", "auth.client_id", "ORIGO_CLIENT_ID", "str", None, "Client id (client-credentials grant)."),
    _f(
        "client_secret",
        "auth.client_secret",
        "ORIGO_CLIENT_SECRET",
        "str",
        None,
        "Client secret.",
        secret=True,
        file_env="ORIGO_CLIENT_SECRET_FILE",
    ),
    _f(
        "token_refresh_margin_seconds",
        "auth.refresh_margin_seconds",
        "TOKEN_REFRESH_MARGIN_SECONDS",
        "float",
        30.0,
        "Renew the token this long before it expires.",
        minimum=0,
        maximum=3600,
    ),
    _f(
        "authorizer_api",
        "auth.authorizer_api",
        "AUTHORIZER_API",
        "str",
        "",
        "The original service's authorizer URL: read, never called (the platform checks webhook tokens itself).",
    ),
    _f(
        "xray_enabled",
        "tracing.xray.enabled",
        "AWS_XRAY_SDK_ENABLED",
        "bool",
        False,
        "Trace every event with AWS X-Ray, from its post to its arrival (segments to AWS_XRAY_DAEMON_ADDRESS).",
    ),
    _f(
        "xray_service_name",
        "tracing.xray.service_name",
        "XRAY_SERVICE_NAME",
        "str",
        "dataplatform-probe",
        "Name of the probe's segments in X-Ray (the arrival's is this plus ` listener`).",
    ),
    _f(
        "xray_sampling_rules",
        "tracing.xray.sampling_rules",
        "XRAY_SAMPLING_RULES",
        "str",
        "",
        "A file of the X-Ray SDK's local sampling rules (JSON); empty: every event is traced.",
    ),
    _f(
        "event_interval_seconds",
        "sender.event_interval_seconds",
        "EVENT_INTERVAL_SECONDS",
        "float",
        10.0,
        "Time between two events (fixed rate from the first send).",
        minimum=0,
        exclusive_min=True,
        maximum=86400,
    ),
    _f(
        "payload_bytes",
        "sender.payload_bytes",
        "PAYLOAD_BYTES",
        "int",
        0,
        "Pad each event to about this many bytes (0: no padding); at most the collector's 1 MiB and MAX_MESSAGE_BYTES.",
        minimum=0,
        maximum=MAX_EVENT_BYTES,
    ),
    _f(
        "max_consecutive_errors",
        "sender.max_consecutive_errors",
        "MAX_CONSECUTIVE_ERRORS",
        "int",
        10,
        "Exit non-zero after this many failed posts in a row (0 disables).",
        minimum=0,
        maximum=1_000_000,
    ),
    _f(
        "startup_wait_seconds",
        "sender.startup_wait_seconds",
        "STARTUP_WAIT_SECONDS",
        "float",
        30.0,
        "How long the sender waits for the listener to subscribe before sending anyway.",
        minimum=0,
        maximum=3600,
    ),
    _f(
        "loss_timeout_seconds",
        "listener.loss_timeout_seconds",
        "LOSS_TIMEOUT_SECONDS",
        "float",
        300.0,
        "An event missing this long after its send is judged lost (or unobserved).",
        minimum=0,
        exclusive_min=True,
        maximum=7 * 86400,
    ),
    _f(
        "missing_grace_seconds",
        "listener.missing_grace_seconds",
        "MISSING_GRACE_SECONDS",
        "float",
        15.0,
        "The probe_events_missing_*_share gauges leave out events younger than this (still on their way).",
        minimum=0,
        maximum=3600,
    ),
    _f(
        "latency_buckets",
        "listener.latency_buckets",
        "LATENCY_BUCKETS",
        "buckets",
        DEFAULT_LATENCY_BUCKETS,
        "Histogram buckets of probe_event_latency_seconds, in seconds.",
    ),
    _f(
        "retention_seconds",
        "store.retention_seconds",
        "RETENTION_SECONDS",
        "float",
        7 * 86400.0,
        "Judged events older than this are pruned from the store.",
        minimum=60,
        maximum=365 * 86400,
    ),
    _f("db_path", "store.path", "PROBE_DB_PATH", "str", "var/probe.sqlite3", "The SQLite file both processes share."),
    _f(
        "metrics_dir",
        "metrics.multiproc_dir",
        "PROMETHEUS_MULTIPROC_DIR",
        "str",
        "var/metrics",
        "prometheus_client multiprocess directory (wiped at stack start).",
    ),
    _f("metrics_host", "metrics.host", "METRICS_HOST", "str", "0.0.0.0", "Address the metrics endpoint binds."),
    _f(
        "metrics_port",
        "metrics.port",
        "METRICS_PORT",
        "int",
        8000,
        "Port of /metrics, /status, /healthz, /readyz.",
        minimum=1,
        maximum=65535,
    ),
    _f(
        "ready_max_post_age_seconds",
        "metrics.ready_max_post_age_seconds",
        "READY_MAX_POST_AGE_SECONDS",
        "float",
        0.0,
        "/readyz wants a successful post this recent; 0 means 3 intervals + the post timeout.",
        minimum=0,
        maximum=86400,
    ),
    _f("log_format", "log.format", "LOG_FORMAT", "choice", "text", "`text` or `json` lines.", choices=("text", "json")),
    _f(
        "log_level",
        "log.level",
        "LOG_LEVEL",
        "choice",
        "INFO",
        "Log level.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    _f(
        "log_events",
        "log.events",
        "LOG_EVENTS",
        "bool",
        False,
        "Log every arrival at INFO (the demo does); otherwise only what goes wrong.",
    ),
    _f(
        "group",
        "fleet.group",
        "PROBE_GROUP",
        "str",
        "",
        "Instances of one group watch the same datasets: each other's events are a peer's, not foreign "
        "(empty: no group).",
    ),
    _f(
        "location",
        "fleet.location",
        "PROBE_LOCATION",
        "str",
        "",
        "Where this instance runs (a zone, a region), in its events and probe_instance_info; empty: the host name.",
    ),
    _f(
        "shard",
        "fleet.shard",
        "PROBE_SHARD",
        "str",
        "",
        f"`i/n`: watch only the entries of the datasets list whose dataset id hashes (mod n) to i; "
        f"n at most {shard_mod.MAX_SHARDS} (empty: all).",
    ),
)

# The original service's names where ours means the same thing: accepted, with a warning.
ALIASES = {
    "OKDATA_ENVIRONMENT": "ORIGO_ENVIRONMENT",
    "OKDATA_CLIENT_ID": "ORIGO_CLIENT_ID",
    "OKDATA_CLIENT_SECRET": "ORIGO_CLIENT_SECRET",
    "DISMISS_EVENT_TIMEOUT_SECONDS": "LOSS_TIMEOUT_SECONDS",
}
# The original service's names that mean nothing here: ignored, with a warning that says why.
IGNORED = {
    "CLEAN_EVENTS_INTERVAL_SECONDS": "judged events are pruned after RETENTION_SECONDS, in small batches",
    "LOCAL_RUN": "use ORIGO_ENVIRONMENT=local, or `make run` for the demo against the emulator",
}
# Variables read elsewhere (by `probe run`, the emulator, supervisord's configuration).
OTHER_VARIABLES = frozenset(
    {
        "PROBE_CONFIG",
        "PROBE_RUN_DIR",
        "PROBE_PYTHON",
        "PROBE_WORKDIR",
        "PROBE_FATAL_MARKER",
        "EMULATOR_FAULTS",
        "EMULATOR_CLIENT_SECRET",
        "EMULATOR_WEBHOOK_TOKEN",
        "SUPERVISOR_USER",
        "SUPERVISOR_PASSWORD",
        "SUPERVISOR_LOGLEVEL",
        "AWS_XRAY_DAEMON_ADDRESS",
    }
)
OUR_PREFIXES = ("PROBE_", "ORIGO_", "OKDATA_")
UNIT_SUFFIXES = ("_SECONDS", "_BYTES")
# The placeholders of probe.env.example: a value still set to one was never filled in.
PLACEHOLDERS = frozenset({"replace-me", "your-client-id", "your-dataset-id"})
MAX_SECRET_FILE_BYTES = 65536
# A configuration file is a few KB. Bounds for what one may hold: its size, and how many values it
# expands to (YAML aliases can make a few hundred bytes into billions of values).
MAX_CONFIG_FILE_BYTES = 1048576
MAX_CONFIG_VALUES = 100_000

_BY_YAML = {f.yaml: f for f in FIELDS}
_BY_NAME = {f.name: f for f in FIELDS}


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and any(k.startswith(path + ".") for k in _BY_YAML):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def value_count(doc: object, limit: int) -> int:
    """How many values a parsed document holds with every alias expanded (keys included), counted
    up to just past `limit`; no recursion."""
    count, stack = 0, [doc]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a setting written twice is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> tuple[dict[str, Any], list[Any] | None]:
    """(the settings by dotted key, the raw `datasets:` list or None)."""
    try:
        doc = yaml.load(read_small(path, MAX_CONFIG_FILE_BYTES).decode("utf-8"), Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror}); set PROBE_CONFIG") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    except NotSmallFile as exc:
        raise ConfigError(f"config file {path}: {exc}; set PROBE_CONFIG to a configuration file") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: nested too deeply to be a configuration") from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where}: {exc.problem}; write each setting once") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where}: not valid YAML; fix the syntax") from None
    if doc is None:
        return {}, None
    if value_count(doc, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError(f"config file {path}: expands to more than {MAX_CONFIG_VALUES} values (YAML aliases?)")
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings at the top level")
    datasets = doc.pop("datasets", None)
    if "datasets" in {str(k) for k in doc} or (datasets is not None and not isinstance(datasets, list)):
        raise ConfigError(f"datasets (in {path}): expected a list of entries, each a mapping with at least id")
    values = _flatten(doc)
    for key in values:
        if key not in _BY_YAML:
            raise ConfigError(f"{key} (in {path}): unknown setting; see the configuration table in README.md")
    return values, datasets


def _show(field: Field, raw: Any) -> str:
    return REDACTED if field.secret else repr(raw)


def _read_secret_file(label: str, file_path: str) -> str:
    """A secret from a file, refusing what cannot be a secret file; never shows a byte of it."""
    try:
        data = read_small(file_path, MAX_SECRET_FILE_BYTES)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {file_path} ({exc.strerror})") from None
    except NotSmallFile as exc:
        what = "is too large to be a secret" if "larger" in str(exc) else "is not a regular file"
        raise ConfigError(f"{label}: {file_path} {what}") from None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: {file_path} is not UTF-8 text") from None


def _environment(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The variables to read, with the original's names mapped to ours; (variables, deprecated origin, warnings)."""
    variables = dict(env)
    renamed: dict[str, str] = {}
    warnings: list[str] = []
    for old, new in ALIASES.items():
        if old not in env:
            continue
        if new in env and env[new] != env[old]:
            raise ConfigError(f"{old} and {new} (environment variables) disagree; {old} is the old name: unset it")
        variables.setdefault(new, env[old])
        renamed[new] = old
        warnings.append(f"{old} is the original service's name of {new}; it is read, but set {new} instead")
    for old, why in IGNORED.items():
        if old in env:
            warnings.append(f"{old} is not used by this probe (ignored): {why}")
    known = {f.env for f in FIELDS} | {f.file_env for f in FIELDS if f.file_env} | OTHER_VARIABLES
    known_all = known | set(ALIASES) | set(IGNORED)
    for name in sorted(env):
        if name in known_all:
            continue
        # A unit left off (LOSS_TIMEOUT for LOSS_TIMEOUT_SECONDS) is too far for difflib's ratio.
        close = [f"{name}{unit}" for unit in UNIT_SUFFIXES if f"{name}{unit}" in known]
        close = close or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.85)
        if close:
            warnings.append(f"{name} is not a setting of the probe (ignored); did you mean {close[0]}?")
        elif name.startswith(OUR_PREFIXES):
            warnings.append(f"{name} is not a setting of the probe (ignored); `probe config docs` lists them")
    return variables, renamed, warnings


def load(env: Mapping[str, str] | None = None, path: str | None = None, *, for_reading: bool = False) -> Config:
    """Read, merge and validate every setting; raise ConfigError naming the first bad one.

    Relative paths in the settings (store, metrics directory) are taken relative to
    the configuration file's directory when a file was read, so that every command
    finds the same store from any working directory.

    `for_reading`: for the commands that only read what a running stack left (`probe status`,
    `probe ctl`, `probe health`): no secret is read or required, since they use none and an
    operator's second terminal rarely has them.
    """
    env = os.environ if env is None else env
    env, renamed, warnings = _environment(env)
    config_path = Path(path or env.get("PROBE_CONFIG") or DEFAULT_CONFIG_PATH)
    explicit = bool(path or env.get("PROBE_CONFIG"))
    read_file = explicit or config_path.exists()
    from_file, dataset_list = _read_yaml(config_path) if read_file else ({}, None)

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field in FIELDS:
        raw, where = None, ""
        if field.secret and for_reading:
            continue
        if field.file_env and env.get(field.file_env):
            raw = _read_secret_file(f"{field.file_env} (environment variable)", env[field.file_env])
            where = f"file named by {field.file_env}"
        elif field.env in env:
            raw, where = env[field.env], "environment variable"
            if field.env in renamed:
                where = f"environment variable {renamed[field.env]}"
        elif field.yaml in from_file:
            raw, where = from_file[field.yaml], f"in {config_path}"
        if raw is None:
            continue
        try:
            values[field.name] = field.parse(raw)
        except (ValueError, TypeError):
            label = (
                field.file_env if where.startswith("file") else (field.env if "environment" in where else field.yaml)
            )
            raise ConfigError(f"{label} ({where}) = {_show(field, raw)}: expected {field.expected()}") from None
        origin[field.name] = where

    environment = values.get("environment", DEFAULT_ENVIRONMENT)
    preset = PRESETS[environment]
    for field in FIELDS:
        if field.name not in values:
            values[field.name] = preset.get(field.name, field.default)
            origin[field.name] = f"{environment} preset" if field.name in preset else "default"
    if read_file:
        base = config_path.resolve().parent
        for name in ("db_path", "metrics_dir"):
            value = values[name]
            if value and value != ":memory:" and not value.startswith("file:") and not Path(value).is_absolute():
                values[name] = os.path.normpath(base / value)
    if dataset_list is None:
        datasets = (_single_dataset(values),)
    else:
        for name in ("dataset_id", "dataset_version"):
            where = origin[name]
            if where.startswith("in ") or "environment" in where:
                field = _BY_NAME[name]
                label = field.yaml if where.startswith("in ") else field.env
                raise ConfigError(
                    f"datasets (in {config_path}) and {label} ({where}) are both given: use one form, "
                    "the datasets list or the single dataset"
                )
        datasets = _dataset_list(dataset_list, values, config_path, for_reading)
        origin["datasets"] = f"in {config_path}"
    if not values["location"]:
        values["location"] = default_location()
        origin["location"] = "default (the host name)"
    watched = _shard_part(datasets, values["shard"], _label(_BY_NAME["shard"], origin))
    cfg = Config(
        **values,
        origin=origin,
        config_file=str(config_path.resolve()) if read_file else "",
        warnings=tuple(warnings),
        datasets=watched,
        configured=datasets,
    )
    cfg = _validate(cfg, origin, config_path, for_reading)
    if cfg.auth_enabled and not for_reading:  # never silent: these datasets' posts go without the token
        withheld = [d.name for d in cfg.datasets if not cfg.token_allowed(d.collector_endpoint())]
        if withheld:
            note = (
                f"the bearer token is not sent to the collector of {', '.join(withheld)}: its host is not in "
                f"COLLECTOR_TOKEN_HOSTS ({','.join(cfg.token_hosts())})"
            )
            cfg = replace(cfg, warnings=(*cfg.warnings, note))
    if cfg.xray_enabled and not for_reading:  # read-only commands trace nothing
        from shared.tracing import check_settings

        problem = check_settings(env.get("AWS_XRAY_DAEMON_ADDRESS"), cfg.xray_sampling_rules)
        if problem:
            raise ConfigError(problem)
    return cfg


def default_location() -> str:
    """The host name, as a label value (what a host name may hold, and no more than a label allows)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100].strip("-.")
    return name or "unknown"


def _shard_part(datasets: tuple[Dataset, ...], text: str, label: str) -> tuple[Dataset, ...]:
    """The entries this instance watches under PROBE_SHARD (all of them when it is empty)."""
    try:
        shard = shard_mod.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{label} = {text[:40]!r}: {exc}") from None
    part = tuple(
        d for d, mine in zip(datasets, shard_mod.watched([d.id for d in datasets], shard), strict=True) if mine
    )
    if not part:
        raise ConfigError(
            f"{label} = {text!r}: shard {shard} watches none of the {len(datasets)} datasets of the list "
            "(their ids hash to other shards); use fewer shards"
        )
    return part


def _single_dataset(values: Mapping[str, Any]) -> Dataset:
    """The single-dataset form (DATASET_ID, the `dataset:` key) is a list of one, named by its id."""
    return Dataset(
        name=values["dataset_id"],
        id=values["dataset_id"],
        version=values["dataset_version"],
        interval_seconds=values["event_interval_seconds"],
        webhook_token=values["webhook_token"] or "",
        collector_url=values["collector_url"] or "",
        websocket_url=values["websocket_url"] or "",
        loss_timeout_seconds=values["loss_timeout_seconds"],
        payload_bytes=values["payload_bytes"],
    )


def _dataset_list(
    entries: list[Any], top: Mapping[str, Any], config_path: Path, for_reading: bool = False
) -> tuple[Dataset, ...]:
    """Each entry of `datasets:`, what it leaves out taken from the top-level settings."""
    if not entries:
        raise ConfigError(f"datasets (in {config_path}): the list is empty; give at least one entry with its id")
    if len(entries) > MAX_DATASETS:
        raise ConfigError(f"datasets (in {config_path}): {len(entries)} entries; at most {MAX_DATASETS} are allowed")
    out: list[Dataset] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        label = f"datasets[{index}] (in {config_path})"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label}: expected a mapping with at least id")
        for key in entry:
            if key not in DATASET_KEYS:
                close = difflib.get_close_matches(str(key), list(DATASET_KEYS), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else f"; the keys are {', '.join(DATASET_KEYS)}"
                raise ConfigError(f"{label}: {key!r} is not a key of a dataset entry{hint}")
        if "id" not in entry:
            raise ConfigError(f"{label}: id is missing; every entry names its dataset id")
        values: dict[str, Any] = {}
        for key, setting in DATASET_KEYS.items():
            if not setting:
                continue
            field = _BY_NAME[setting]
            if key in entry:
                try:
                    values[key] = field.parse(entry[key])
                except (ValueError, TypeError):
                    raise ConfigError(
                        f"{label}: {key} = {_show(field, entry[key])}: expected {field.expected()}"
                    ) from None
            else:
                values[key] = top[setting] if top[setting] is not None else ""
        if for_reading:
            values["webhook_token"] = ""
        elif "webhook_token_file" in entry:
            if "webhook_token" in entry:
                raise ConfigError(f"{label}: give webhook_token or webhook_token_file, not both")
            token_path = Path(_text(entry["webhook_token_file"]))
            if not token_path.is_absolute():
                token_path = config_path.resolve().parent / token_path
            values["webhook_token"] = _read_secret_file(f"{label}: webhook_token_file", str(token_path))
        name = _text(entry["name"]) if "name" in entry else values["id"]
        if not DATASET_NAME.fullmatch(name):
            raise ConfigError(
                f"{label}: name {name!r} is not a usable name: letters, digits and . _ / : - only, "
                "at most 100, starting with a letter or digit (the name is the `dataset` label)"
            )
        if name in names:
            raise ConfigError(
                f"{label}: name {name!r} is also the name of datasets[{names[name]}]; "
                "give each entry a distinct name (two entries of one dataset id need a name each)"
            )
        names[name] = index
        out.append(Dataset(name=name, **values))
    return tuple(out)


def _validate(cfg: Config, origin: dict[str, str], config_path: Path, for_reading: bool = False) -> Config:
    by_name = {f.name: f for f in FIELDS}

    def fail(name: str, message: str) -> ConfigError:
        field = by_name[name]
        where = origin.get(name, "default")
        label = field.yaml if where.startswith("in ") else field.env
        return ConfigError(f"{label} ({where}): {message}")

    listed = "datasets" in origin
    names = ("keycloak_realm",) if listed else ("dataset_id", "dataset_version", "keycloak_realm")
    for name in names:
        if not getattr(cfg, name):
            raise fail(name, f"must not be empty; set {by_name[name].env}")
    _check_paths(cfg, fail, config_path)
    required = [] if listed else ["webhook_token", "collector_url", "websocket_url"]
    if cfg.auth_enabled:
        required += ["client_id", "client_secret", "keycloak_server"]
    missing = [by_name[name] for name in required if not getattr(cfg, name) and not for_reading]
    if missing:
        names_ = ", ".join(f.env + (f" (or {f.file_env})" if f.file_env else "") for f in missing)
        hint = "; or AUTH_ENABLED=false for a collector without auth" if cfg.auth_enabled else ""
        raise ConfigError(f"missing for ORIGO_ENVIRONMENT={cfg.environment}: {names_}{hint} (the demo: make run)")
    if listed:
        for index, dataset in enumerate(cfg.datasets):
            _check_entry(cfg, dataset, f"datasets[{index}] ({dataset.name}, in {config_path})", for_reading)
    for f in FIELDS:
        value = getattr(cfg, f.name)
        if isinstance(value, str) and value in PLACEHOLDERS:
            raise fail(f.name, "is still the placeholder of probe.env.example; fill in the real value")
    if cfg.xray_sampling_rules:
        try:
            rules = json.loads(read_small(cfg.xray_sampling_rules, MAX_CONFIG_FILE_BYTES))
        except (OSError, ValueError, RecursionError):
            rules = None
        if not isinstance(rules, dict):
            raise fail("xray_sampling_rules", "must name a readable JSON file of X-Ray local sampling rules")
    try:
        from shared.http_deadline import LOOKUP_SECONDS, resolve  # here: requests costs what never posts

        resolve(cfg.metrics_host, 0, within=LOOKUP_SECONDS)  # a silent DNS server never hangs a start
    except (socket.gaierror, UnicodeError):
        raise fail("metrics_host", f"{cfg.metrics_host!r} is not an address of this machine") from None
    if not _placeholders_allowed(cfg.collector_url):
        raise fail("collector_url", "only the placeholders {dataset_id} and {version} are allowed")
    if cfg.pong_timeout_seconds >= cfg.ping_interval_seconds:
        raise fail("pong_timeout_seconds", "must be smaller than the ping interval (PING_INTERVAL_SECONDS)")
    if cfg.loss_timeout_seconds <= cfg.post_timeout_seconds:
        raise fail(
            "loss_timeout_seconds",
            "must exceed POST_TIMEOUT_SECONDS, or an event still being posted would be judged",
        )
    if cfg.retention_seconds <= cfg.loss_timeout_seconds:
        raise fail("retention_seconds", "must exceed LOSS_TIMEOUT_SECONDS, or events are pruned before judged")
    if not listed:
        _check_payload(cfg, cfg.payload_bytes, f"{_label(by_name['payload_bytes'], origin)}")
    for name in ("group", "location"):
        value = getattr(cfg, name)
        if value and not LABEL_VALUE.fullmatch(value):
            raise fail(
                name,
                f"{value[:40]!r} is not usable: letters, digits and . _ - only, at most 100, starting with a "
                "letter or digit (it is a label value and a field of every event)",
            )
    return cfg


def _label(field: Field, origin: Mapping[str, str]) -> str:
    where = origin.get(field.name, "default")
    return f"{field.yaml if where.startswith('in ') else field.env} ({where})"


def _placeholders_allowed(template: str) -> bool:
    """Whether a collector URL template names no placeholder but {dataset_id} and {version}."""
    try:
        placeholders = {p for _, p, _, _ in string.Formatter().parse(template) if p is not None}
    except ValueError:
        return False
    return placeholders <= {"dataset_id", "version"}


def _check_entry(cfg: Config, ds: Dataset, label: str, for_reading: bool = False) -> None:
    """One entry of the datasets list: what the top-level checks say of the single dataset, per entry."""
    keys = ("id", "version", "collector_url", "websocket_url")
    for key in keys if for_reading else ("id", "version", "webhook_token", *keys[2:]):
        if not getattr(ds, key):
            setting = _BY_NAME[DATASET_KEYS[key]]
            also = f" (or {setting.file_env})" if setting.file_env else ""
            raise ConfigError(f"{label}: {key} is missing: give it in the entry, or set {setting.env}{also} for all")
        if getattr(ds, key) in PLACEHOLDERS:
            raise ConfigError(f"{label}: {key} is still the placeholder of probe.env.example; fill in the real value")
    if not _placeholders_allowed(ds.collector_url):
        raise ConfigError(f"{label}: collector_url: only the placeholders {{dataset_id}} and {{version}} are allowed")
    if ds.loss_timeout_seconds <= cfg.post_timeout_seconds:
        raise ConfigError(
            f"{label}: loss_timeout_seconds must exceed POST_TIMEOUT_SECONDS, "
            "or an event still being posted would be judged"
        )
    if cfg.retention_seconds <= ds.loss_timeout_seconds:
        raise ConfigError(f"{label}: loss_timeout_seconds must be below RETENTION_SECONDS, or events are pruned first")
    _check_payload(cfg, ds.payload_bytes, f"{label}: payload_bytes")


def _check_payload(cfg: Config, payload_bytes: int, label: str) -> None:
    if payload_bytes > cfg.max_message_bytes:
        raise ConfigError(
            f"{label} = {payload_bytes}: the listener refuses messages over MAX_MESSAGE_BYTES "
            f"({cfg.max_message_bytes}); pad less or raise MAX_MESSAGE_BYTES"
        )


def _check_paths(cfg: Config, fail: Any, config_path: Path) -> None:
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


def settings_table() -> list[tuple[str, str, str, str]]:
    """(yaml key, env var, default, help) rows, for the README and `probe config docs`."""
    rows = []
    for f in FIELDS:
        default = "from environment" if f.default is None else f.default
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" for v in default)
        env = f.env + (f" / {f.file_env}" if f.file_env else "")
        rows.append((f.yaml, env, str(default), f.help))
    return rows
