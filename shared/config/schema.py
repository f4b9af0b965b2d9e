"""The schema: every setting as one row, and the `Config` and `Dataset` made of them.

A row is a field of `Config`: the attribute and its type, then `setting(yaml key, environment
variable, default, help, bounds...)`. Everything else is derived from these rows: `FIELDS`, the
environment and YAML readers, the one-line errors, `probe config check`, the settings table of
the docs. A row with `entry="key"` is a per-dataset setting: `Dataset` gets an attribute `key`,
an entry of `datasets:` may set it, and the top-level value is what an entry leaves out.

Adding a setting is one row here plus, when it must agree with others, one check in validate.py:

    # here, at its place in the docs' table:
    post_retries: int = setting("collector.post_retries", "POST_RETRIES", 2, "Retries of one post.", within=(0, 10))
    # validate.py, in global_rules (type and bounds are the row's; this is a rule between settings):
    if cfg.post_retries and cfg.post_timeout_seconds < 1:
        raise fail("post_retries", "needs POST_TIMEOUT_SECONDS of 1 or more")

A per-dataset setting adds `entry="retries"` to its row (then `ds.retries` exists and a `datasets:`
entry may set it) and its check goes to `check_dataset`, which every dataset passes, the single
form's too. `probe config docs` then prints the new docs table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field

from shared import shard as shard_mod
from shared.config.fields import Field, rows_of, setting
from shared.config.views import ConfigViews, DatasetViews
from shared.contract import MAX_EVENT_BYTES, REALM

# The buckets of probe_event_latency_seconds, in seconds: 10 ms to 5 minutes.
_LATENCY_BUCKETS = "0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.5 0.75 1 1.5 2 3 5 7.5 10 15 20 30 45 60 90 120 180 300"
DEFAULT_LATENCY_BUCKETS = tuple(map(float, _LATENCY_BUCKETS.split()))


@dataclass(frozen=True)
class Config(ConfigViews):
    """Every setting (one row each, in the order of the docs' table), and what loading found out."""

    environment: str = setting(
        "environment",
        "ORIGO_ENVIRONMENT",
        "dev",
        "Which platform: `dev` or `prod` (the contract's URLs), or `local` (the emulator, with demo credentials).",
        choices=("local", "dev", "prod"),
    )
    dataset_id: str = setting(
        "dataset.id", "DATASET_ID", "probe-dataset", "Dataset the events are posted to.", entry="id"
    )
    dataset_version: str = setting(
        "dataset.version", "DATASET_VERSION", "1", "Dataset version (a string).", entry="version"
    )
    collector_url: str = setting(
        "collector.url",
        "COLLECTOR_URL",
        None,
        "Collector URL template with `{dataset_id}` and `{version}`; default from the environment.",
        schemes=("http", "https"),
        entry="collector_url",
    )
    collector_token_hosts: str = setting(
        "collector.token_hosts",
        "COLLECTOR_TOKEN_HOSTS",
        "",
        "Comma-separated hosts (`name` or `name:port`) the bearer token may be sent to; default: the host "
        "of `collector.url`. A dataset whose collector is elsewhere posts without the token (logged at start).",
    )
    post_timeout_seconds: float = setting(
        "collector.post_timeout_seconds",
        "POST_TIMEOUT_SECONDS",
        10.0,
        "Deadline of one post including its retries.",
        above=0,
        maximum=300,
    )
    post_concurrency: int = setting(
        "collector.max_in_flight",
        "POST_CONCURRENCY",
        8,
        "Posts allowed in flight at once (a hanging collector never delays the schedule).",
        within=(1, 256),
    )
    websocket_url: str = setting(
        "websocket.url",
        "WEBSOCKET_URL",
        None,
        "Websocket subscription URL (without query); default from the environment.",
        schemes=("ws", "wss"),
        entry="websocket_url",
    )
    webhook_token: str = setting(
        "websocket.webhook_token",
        "WEBHOOK_TOKEN",
        None,
        "Read token of the dataset's subscription.",
        secret=True,
        file_env="WEBHOOK_TOKEN_FILE",
        entry="webhook_token",
    )
    ping_interval_seconds: float = setting(
        "websocket.ping_interval_seconds",
        "PING_INTERVAL_SECONDS",
        10.0,
        "How often the listener pings.",
        above=0,
        maximum=3600,
    )
    pong_timeout_seconds: float = setting(
        "websocket.pong_timeout_seconds",
        "PONG_TIMEOUT_SECONDS",
        5.0,
        "A pong missing this long marks the connection dead (must be < ping interval).",
        above=0,
        maximum=3600,
    )
    reconnect_max_seconds: float = setting(
        "websocket.reconnect_max_seconds",
        "RECONNECT_MAX_SECONDS",
        30.0,
        "Cap of the reconnect backoff.",
        within=(0.1, 3600),
    )
    max_message_bytes: int = setting(
        "websocket.max_message_bytes",
        "MAX_MESSAGE_BYTES",
        65536,
        "A message larger than this is counted malformed (a larger frame is refused unread).",
        within=(1024, 64 * 1024 * 1024),
    )
    auth_enabled: bool = setting(
        "auth.enabled",
        "AUTH_ENABLED",
        True,
        "Fetch a Keycloak token for the collector; off for collectors that need none.",
    )
    keycloak_server: str = setting(
        "auth.keycloak_server",
        "KEYCLOAK_SERVER",
        None,
        "Keycloak server URL including `/auth`; default from the environment.",
        schemes=("http", "https"),
    )
    keycloak_realm: str = setting("auth.realm", "KEYCLOAK_REALM", REALM, "Keycloak realm.")
    client_id: str = setting("auth.client_id", "ORIGO_CLIENT_ID", None, "Client id (client-credentials grant).")
    client_secret: str = setting(
        "auth.client_secret",
        "ORIGO_CLIENT_SECRET",
        None,
        "Client secret.",
        secret=True,
        file_env="ORIGO_CLIENT_SECRET_FILE",
    )
    token_refresh_margin_seconds: float = setting(
        "auth.refresh_margin_seconds",
        "TOKEN_REFRESH_MARGIN_SECONDS",
        30.0,
        "Renew the token this long before it expires.",
        within=(0, 3600),
    )
    authorizer_api: str = setting(
        "auth.authorizer_api",
        "AUTHORIZER_API",
        "",
        "The original service's authorizer URL: read, never called (the platform checks webhook tokens itself).",
    )
    xray_enabled: bool = setting(
        "tracing.xray.enabled",
        "AWS_XRAY_SDK_ENABLED",
        False,
        "Trace every event with AWS X-Ray, from its post to its arrival (segments to AWS_XRAY_DAEMON_ADDRESS).",
    )
    xray_service_name: str = setting(
        "tracing.xray.service_name",
        "XRAY_SERVICE_NAME",
        "dataplatform-probe",
        "Name of the probe's segments in X-Ray (the arrival's is this plus ` listener`).",
    )
    xray_sampling_rules: str = setting(
        "tracing.xray.sampling_rules",
        "XRAY_SAMPLING_RULES",
        "",
        "A file of the X-Ray SDK's local sampling rules (JSON); empty: every event is traced.",
    )
    event_interval_seconds: float = setting(
        "sender.event_interval_seconds",
        "EVENT_INTERVAL_SECONDS",
        10.0,
        "Time between two events (fixed rate from the first send).",
        above=0,
        maximum=86400,
        entry="interval_seconds",
    )
    payload_bytes: int = setting(
        "sender.payload_bytes",
        "PAYLOAD_BYTES",
        0,
        "Pad each event to about this many bytes (0: no padding); at most the collector's 1 MiB and MAX_MESSAGE_BYTES.",
        within=(0, MAX_EVENT_BYTES),
        entry="payload_bytes",
    )
    max_consecutive_errors: int = setting(
        "sender.max_consecutive_errors",
        "MAX_CONSECUTIVE_ERRORS",
        10,
        "Exit non-zero after this many failed posts in a row (0 disables).",
        within=(0, 1_000_000),
    )
    startup_wait_seconds: float = setting(
        "sender.startup_wait_seconds",
        "STARTUP_WAIT_SECONDS",
        30.0,
        "How long the sender waits for the listener to subscribe before sending anyway.",
        within=(0, 3600),
    )
    loss_timeout_seconds: float = setting(
        "listener.loss_timeout_seconds",
        "LOSS_TIMEOUT_SECONDS",
        300.0,
        "An event missing this long after its send is judged lost (or unobserved).",
        above=0,
        maximum=7 * 86400,
        entry="loss_timeout_seconds",
    )
    missing_grace_seconds: float = setting(
        "listener.missing_grace_seconds",
        "MISSING_GRACE_SECONDS",
        15.0,
        "The probe_events_missing_*_share gauges leave out events younger than this (still on their way).",
        within=(0, 3600),
    )
    latency_buckets: tuple[float, ...] = setting(
        "listener.latency_buckets",
        "LATENCY_BUCKETS",
        DEFAULT_LATENCY_BUCKETS,
        "Histogram buckets of probe_event_latency_seconds, in seconds.",
    )
    retention_seconds: float = setting(
        "store.retention_seconds",
        "RETENTION_SECONDS",
        7 * 86400.0,
        "Judged events older than this are pruned from the store.",
        within=(60, 365 * 86400),
    )
    db_path: str = setting("store.path", "PROBE_DB_PATH", "var/probe.sqlite3", "The SQLite file both processes share.")
    metrics_dir: str = setting(
        "metrics.multiproc_dir",
        "PROMETHEUS_MULTIPROC_DIR",
        "var/metrics",
        "prometheus_client multiprocess directory (wiped at stack start).",
    )
    metrics_host: str = setting("metrics.host", "METRICS_HOST", "0.0.0.0", "Address the metrics endpoint binds.")
    metrics_port: int = setting(
        "metrics.port", "METRICS_PORT", 8000, "Port of /metrics, /status, /healthz, /readyz.", within=(1, 65535)
    )
    ready_max_post_age_seconds: float = setting(
        "metrics.ready_max_post_age_seconds",
        "READY_MAX_POST_AGE_SECONDS",
        0.0,
        "/readyz wants a successful post this recent; 0 means 3 intervals + the post timeout.",
        within=(0, 86400),
    )
    log_format: str = setting("log.format", "LOG_FORMAT", "text", "`text` or `json` lines.", choices=("text", "json"))
    log_level: str = setting(
        "log.level", "LOG_LEVEL", "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_events: bool = setting(
        "log.events", "LOG_EVENTS", False, "Log every arrival at INFO (the demo does); otherwise only what goes wrong."
    )
    group: str = setting(
        "fleet.group",
        "PROBE_GROUP",
        "",
        "Instances of one group watch the same datasets: each other's events are a peer's, not foreign "
        "(empty: no group).",
    )
    location: str = setting(
        "fleet.location",
        "PROBE_LOCATION",
        "",
        "Where this instance runs (a zone, a region), in its events and probe_instance_info; empty: the host name.",
    )
    shard: str = setting(
        "fleet.shard",
        "PROBE_SHARD",
        "",
        f"`i/n`: watch only the entries of the datasets list whose dataset id hashes (mod n) to i; "
        f"n at most {shard_mod.MAX_SHARDS} (empty: all).",
    )
    # Not settings: what loading found out, for `probe config check` and `probe run`.
    origin: Mapping[str, str] = dc_field(default_factory=dict, compare=False)
    config_file: str = ""  # the YAML file read, or "" when none was
    warnings: tuple[str, ...] = ()
    # The datasets watched: the `datasets:` list (this shard's part of it), or one made of the
    # top-level settings.
    datasets: tuple[Dataset, ...] = ()
    # The whole list, every shard's (the same as `datasets` when the instance is not sharded).
    configured: tuple[Dataset, ...] = ()


FIELDS: tuple[Field, ...] = rows_of(Config)
BY_NAME = {f.name: f for f in FIELDS}
BY_YAML = {f.yaml: f for f in FIELDS}
DATASET_FIELDS = tuple(f for f in FIELDS if f.entry)  # the per-dataset settings

_TYPES = {"float": float, "int": int, "bool": bool, "buckets": tuple}
Dataset = dataclasses.make_dataclass(
    "Dataset",
    [("name", str), *((f.entry, _TYPES.get(f.kind, str)) for f in DATASET_FIELDS)],
    bases=(DatasetViews,),
    namespace={"_rows": DATASET_FIELDS, "__module__": __name__, "__doc__": DatasetViews.__doc__},
    frozen=True,
)


def settings_table() -> list[tuple[str, str, str, str]]:
    """(yaml key, env var, default, help) rows, for docs/settings.md and `probe config docs`."""
    rows = []
    for f in FIELDS:
        default = "from environment" if f.default is None else f.default
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" for v in default)
        env = f.env + (f" / {f.file_env}" if f.file_env else "")
        rows.append((f.yaml, env, str(default), f.help))
    return rows
