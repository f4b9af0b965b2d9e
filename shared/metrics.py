"""Every metric of the probe, defined once, with its help text.

prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported, so
this module is imported only after `lifecycle.prepare_metrics_dir()` has run (the
process entry points do that right after loading the configuration).

Gauge modes are chosen for what a value means after its process dies:
`max`/`mostrecent` values stay true (a timestamp, the latest latency), `live*`
values vanish with the process (being connected, events in flight).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from shared import shard as shard_mod
from shared.config import Config

POST_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


D = ("dataset",)


def by_reason(name: str, documentation: str) -> Counter:
    """A counter of one dataset's failures or refusals, by a `reason` label (whose values the
    caller's enum lists and precreates)."""
    return Counter(name, documentation, [*D, "reason"])


# ---- both processes ----
build_info = Gauge(
    "probe_build_info",
    "Always 1; labels tell the probe version and this instance's app_id.",
    ["version", "app_id"],
    multiprocess_mode="max",
)

instance_info = Gauge(
    "probe_instance_info",
    "Always 1; labels tell this instance's group (PROBE_GROUP, empty: none), location (PROBE_LOCATION) "
    "and shard (PROBE_SHARD, i/n; 0/1 when not sharded): the fleet rules join them to every series.",
    ["group", "location", "shard"],
    multiprocess_mode="max",
)
dataset_watched = Gauge(
    "probe_dataset_watched",
    "For every entry of the whole datasets list: 1 if this instance watches it, 0 if another shard does; "
    "`shard` is the shard that owns it (i/n). A dataset at 0 on every live instance is watched by none.",
    [*D, "shard"],
    multiprocess_mode="max",
)


def describe_instance(cfg: Config) -> None:
    """Export who this instance is in its fleet, and which of the whole list it watches (both processes
    do: either alone still tells Prometheus)."""
    shard = shard_mod.parse(cfg.shard)
    instance_info.labels(cfg.group, cfg.location, str(shard)).set(1)
    mine = {ds.name for ds in cfg.datasets}
    for ds in cfg.configured:
        owner = shard_mod.Shard(shard_mod.shard_of(ds.id, shard.count), shard.count)
        dataset_watched.labels(ds.name, str(owner)).set(1 if ds.name in mine else 0)


store_errors = Counter(
    "probe_store_errors",
    "Store writes that failed (disk full, file gone), by operation: the probe's own trouble, not the pipeline's.",
    [*D, "operation"],
)

_store_log = logging.getLogger("store")


def count_store_error(dataset: str, operation: str, exc: Exception) -> None:
    """A store write that failed: counted under its operation and logged as what it is (the probe's
    own trouble, a full disk most likely), never as a pipeline or connection problem."""
    store_errors.labels(dataset, operation).inc()
    _store_log.error(
        "store write failed (%s): %s; is the disk full?",
        operation,
        exc,
        extra={"dataset": dataset, "operation": operation},
    )


# ---- sender ----
events_posted = Counter("probe_events_posted", "Events the collector accepted (2xx).", D)
post_errors = by_reason("probe_event_post_errors", "Events whose post failed for good, once per event, by reason.")
post_retries = Counter("probe_event_post_retries", "Extra post attempts (retries) made within post deadlines.", D)
post_duration = Histogram(
    "probe_event_post_duration_seconds",
    "Time from the first post attempt to its final outcome.",
    D,
    buckets=POST_DURATION_BUCKETS,
)
last_sent = Gauge(
    "probe_last_event_sent_timestamp_seconds", "Unix time the newest event was sent.", D, multiprocess_mode="max"
)
token_requests = Counter("probe_token_requests", "Token requests to Keycloak, by result (ok/error).", [*D, "result"])
token_request_errors = by_reason(
    "probe_token_request_errors",
    "Failed token requests to Keycloak, by reason (dns, refused, tls, timeout, connection, rejected, "
    "http_4xx, http_5xx, redirect, bad_answer).",
)
fail_outs = Counter(
    "probe_sender_fail_outs",
    "Times the sender gave up after MAX_CONSECUTIVE_ERRORS failed posts in a row (and was restarted).",
    D,
)
skipped_slots = by_reason(
    "probe_sender_skipped_slots",
    "Send slots not used, by reason: stall (the process was paused), backpressure (all posts in flight) "
    "or store (the event could not be recorded, so it was not posted).",
)

# ---- listener ----
events_received = Counter("probe_events_received", "First arrivals of this instance's events (late ones included).", D)
wrong_appid = Counter("probe_wrong_appid", "Well-formed events of another probe instance (another app_id).", D)
peer_events = Counter(
    "probe_peer_events",
    "Events of another instance of this instance's group (PROBE_GROUP), by the peer's location: a second "
    "witness's, never counted as foreign (at most 16 locations a dataset; more are counted as `other`).",
    [*D, "peer_location"],
)
events_lost = Counter(
    "probe_events_lost", "Events missing after the loss timeout while the listener was subscribed all along.", D
)
events_unobserved = Counter(
    "probe_events_unobserved",
    "Events missing after the loss timeout while the listener was not subscribed all along (the probe was blind).",
    D,
)
events_late = Counter("probe_events_late", "First arrivals of events already judged lost or unobserved.", D)
events_duplicated = Counter("probe_events_duplicated", "Arrivals of events already received.", D)
# The original service's names, kept so that its dashboards and alerts keep working.
events_duplicates = Counter(
    "probe_events_duplicates",
    "Arrivals of events already received (the original service's name of probe_events_duplicated).",
    D,
)
connection_state = Gauge(
    "probe_connection_state",
    "1 for the listener's current connection state (connected or disconnected), 0 for the other (the original's).",
    [*D, "state"],
    multiprocess_mode="livemostrecent",
)
MISSING_SHARE_WINDOWS = {"1m": 60.0, "10m": 600.0, "1h": 3600.0}
missing_share = {
    name: Gauge(
        f"probe_events_missing_{name}_share",
        f"Share of the events accepted in the last {name} (up to MISSING_GRACE_SECONDS ago) that have not arrived.",
        D,
        multiprocess_mode="livemostrecent",
    )
    for name in MISSING_SHARE_WINDOWS
}
events_out_of_order = Counter(
    "probe_events_out_of_order", "First arrivals with a seqno older than the newest one already received.", D
)
events_corrupted = Counter(
    "probe_events_corrupted",
    "Arrivals of our events whose content no longer matches its digest: altered on the way (still classified).",
    D,
)
events_malformed = by_reason(
    "probe_events_malformed", "Messages that are not a well-formed probe event, by reason; skipped."
)
events_unknown = Counter(
    "probe_events_unknown", "Events with this instance's app_id that the store does not know (e.g. pruned).", D
)
latency_clamped = Counter(
    "probe_event_latency_clamped", "Arrivals earlier than their send time (a clock step); latency taken as 0.", D
)
latest_latency = Gauge(
    "probe_event_latency", "End-to-end latency of the newest first arrival, seconds.", D, multiprocess_mode="mostrecent"
)
in_flight = Gauge(
    "probe_events_in_flight",
    "Events posted and neither received nor judged yet.",
    D,
    multiprocess_mode="livemostrecent",
)
ws_connected = Gauge(
    "probe_websocket_connected", "1 while the listener is subscribed, else 0.", D, multiprocess_mode="livemostrecent"
)
ws_connects = Counter("probe_websocket_connects", "Successful websocket subscriptions.", D)
ws_connect_failures = by_reason(
    "probe_websocket_connect_failures",
    "Failed connection attempts, by reason (dns, refused, tls, timeout, rejected, http_4xx, http_5xx, redirect, "
    "error).",
)
ws_disconnects = by_reason(
    "probe_websocket_disconnects",
    "Ends of a subscription, by reason (server_close, pong_timeout, error, shutdown, too_large).",
)
judge_round = Histogram(
    "probe_judge_round_seconds",
    "Time one judgement round takes (judge, in-flight counts, missing shares, checkpoint, prune).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
last_received = Gauge(
    "probe_last_event_received_timestamp_seconds",
    "Unix time this instance's newest event arrived.",
    D,
    multiprocess_mode="max",
)


@functools.cache
def latency_histogram(buckets: tuple[float, ...]) -> Histogram:
    """The latency histogram; its buckets are configurable, so it is made on first use from the config."""
    return Histogram(
        "probe_event_latency_seconds", "End-to-end latency from send to first arrival, seconds.", D, buckets=buckets
    )


def precreate(metric: Counter, dataset: str, values: Iterable[str]) -> None:
    """Create a metric's series for every known label value (the reason enums of the code
    that counts them) with value 0, so that every series exists from the first scrape:
    rate() and alerts then see 0, not "absent"."""
    for value in values:
        metric.labels(dataset, value)
