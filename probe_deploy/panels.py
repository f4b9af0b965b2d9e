"""The dashboard's panels, each row's as a table (the builders are probe_deploy/grafana.py).

A table row is (title, description, [(expression, legend)], (x, y, w, h)[, unit]): the rows read
like the dashboard does, and a panel more is a few lines more.
"""

from __future__ import annotations

from typing import Any

from probe_deploy.grafana import alert_list, panel, stat, timeseries

TARGET = 'job="$job", instance=~"$instance"'
SEL = f'{TARGET}, dataset=~"$dataset"'


def per_minute(metric: str) -> str:
    return f"sum by (dataset) (increase({metric}{{{SEL}}}[1m]))"


def by_label(metric: str, label: str) -> tuple[str, str]:
    """A counter per minute, one series per value of `label` (reason, result)."""
    return f"sum by (dataset, {label}) (increase({metric}{{{SEL}}}[1m]))", f"{{{{{label}}}}} {{{{dataset}}}}"


def quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (dataset, le) "
        f"(rate(probe_event_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))"
    )


OVERVIEW = (
    (
        "Subscribed",
        "1 while the listener is subscribed to the dataset's websocket.",
        f"max by (dataset) (probe_websocket_connected{{{SEL}}})",
        (0, 1, 4, 4),
    ),
    (
        "Staleness",
        "Time since the newest of the probe's events arrived.",
        f"time() - max by (dataset) (probe_last_event_received_timestamp_seconds{{{SEL}}})",
        (4, 1, 4, 4),
        "s",
    ),
    (
        "Loss (1h)",
        "Lost / posted over the last hour; events the probe could not watch are not counted.",
        f"sum by (dataset) (increase(probe_events_lost_total{{{SEL}}}[1h])) / "
        f"sum by (dataset) (increase(probe_events_posted_total{{{SEL}}}[1h]))",
        (8, 1, 4, 4),
        "percentunit",
    ),
    (
        "Latency p99 (15m)",
        "99th percentile of send-to-arrival latency over 15 minutes.",
        f"histogram_quantile(0.99, sum by (dataset, le) (rate(probe_event_latency_seconds_bucket{{{SEL}}}[15m])))",
        (12, 1, 4, 4),
        "s",
    ),
    (
        "In flight",
        "Events posted and neither received nor judged yet.",
        f"sum by (dataset) (probe_events_in_flight{{{SEL}}})",
        (16, 1, 4, 4),
    ),
    ("Probe up", "1 while Prometheus can scrape the probe.", f"min(up{{{TARGET}}})", (20, 1, 4, 4)),
)
EVENTS = (
    (
        "Events per minute",
        "What happened to the probe's events, per minute.",
        [
            (per_minute("probe_events_posted_total"), "posted {{dataset}}"),
            (per_minute("probe_events_received_total"), "received {{dataset}}"),
            (per_minute("probe_events_lost_total"), "lost {{dataset}}"),
            (per_minute("probe_events_unobserved_total"), "unobserved {{dataset}}"),
            (per_minute("probe_events_late_total"), "late {{dataset}}"),
            (per_minute("probe_events_duplicated_total"), "duplicated {{dataset}}"),
            (per_minute("probe_events_out_of_order_total"), "out of order {{dataset}}"),
        ],
        (0, 15, 12, 8),
    ),
    (
        "Post errors by reason",
        "Events whose post failed for good, per minute.",
        [by_label("probe_event_post_errors_total", "reason")],
        (12, 15, 12, 8),
    ),
)
CONNECTION = (
    (
        "Websocket connected",
        "1 while subscribed.",
        [(f"max by (dataset) (probe_websocket_connected{{{SEL}}})", "{{dataset}}")],
        (0, 24, 8, 7),
    ),
    (
        "Disconnects by reason",
        "Ends of a subscription, per minute.",
        [by_label("probe_websocket_disconnects_total", "reason")],
        (8, 24, 8, 7),
    ),
    (
        "Staleness",
        "Seconds since the newest of the probe's events arrived.",
        [(f"time() - max by (dataset) (probe_last_event_received_timestamp_seconds{{{SEL}}})", "{{dataset}}")],
        (16, 24, 8, 7),
        "s",
    ),
)
SENDER = (
    (
        "In flight",
        "Events posted and neither received nor judged yet.",
        [(f"sum by (dataset) (probe_events_in_flight{{{SEL}}})", "{{dataset}}")],
        (0, 32, 8, 7),
    ),
    (
        "Skipped send slots",
        "Slots not used, per minute: stall or backpressure.",
        [by_label("probe_sender_skipped_slots_total", "reason")],
        (8, 32, 8, 7),
    ),
    (
        "Token requests",
        "Token requests to Keycloak per minute, by result.",
        [by_label("probe_token_requests_total", "result")],
        (16, 32, 8, 7),
    ),
    (
        "Malformed and foreign messages",
        "Messages skipped per minute, by reason; other instances' events.",
        [
            (
                f"sum by (dataset, reason) (increase(probe_events_malformed_total{{{SEL}}}[1m]))",
                "malformed {{reason}} {{dataset}}",
            ),
            (per_minute("probe_wrong_appid_total"), "other app_id {{dataset}}"),
        ],
        (0, 39, 12, 7),
    ),
    (
        "Sender fail-outs and clock steps",
        "Per hour.",
        [
            (f"sum by (dataset) (increase(probe_sender_fail_outs_total{{{SEL}}}[1h]))", "fail-outs {{dataset}}"),
            (
                f"sum by (dataset) (increase(probe_event_latency_clamped_total{{{SEL}}}[1h]))",
                "clock steps {{dataset}}",
            ),
        ],
        (12, 39, 12, 7),
    ),
)
ORIGINAL = (
    (
        "Events (original)",
        "The original dashboard's counters.",
        [
            (f"probe_events_posted_total{{{TARGET}}}", "posted"),
            (f"probe_events_received_total{{{TARGET}}}", "received"),
            (f"probe_events_lost_total{{{TARGET}}}", "lost"),
        ],
        (0, 48, 12, 7),
    ),
    (
        "Events per minute (original)",
        "As the original dashboard plotted them.",
        [
            (f"rate(probe_events_posted_total{{{TARGET}}}[1m]) * 60", "posted"),
            (f"rate(probe_events_received_total{{{TARGET}}}[1m]) * 60", "received"),
            (f"rate(probe_events_lost_total{{{TARGET}}}[1m]) * 60", "lost"),
        ],
        (12, 48, 12, 7),
    ),
    (
        "Latency (original)",
        "The newest first arrival's latency, and its 10-minute view.",
        [
            (f"probe_event_latency{{{TARGET}}}", "latest"),
            (f"avg_over_time(probe_event_latency{{{TARGET}}}[10m])", "avg 10m"),
            (f"max_over_time(probe_event_latency{{{TARGET}}}[10m])", "max 10m"),
            (f"quantile_over_time(0.90, probe_event_latency{{{TARGET}}}[10m])", "p90 10m"),
        ],
        (0, 55, 12, 7),
        "s",
    ),
    (
        "Missing share (original)",
        "Share of the events sent in the window that have not arrived.",
        [
            (f"probe_events_missing_1m_share{{{TARGET}}}", "1m"),
            (f"probe_events_missing_10m_share{{{TARGET}}}", "10m"),
            (f"probe_events_missing_1h_share{{{TARGET}}}", "1h"),
        ],
        (12, 55, 12, 7),
        "percentunit",
    ),
)


def latency() -> list[dict[str, Any]]:
    """The latency percentiles and the heatmap (a panel of its own kind)."""
    return [
        timeseries(
            "End-to-end latency",
            "Percentiles of send-to-arrival latency, from the histogram.",
            [
                (quantile(0.5), "p50 {{dataset}}"),
                (quantile(0.9), "p90 {{dataset}}"),
                (quantile(0.99), "p99 {{dataset}}"),
            ],
            (0, 6, 12, 8),
            "s",
        ),
        panel(
            "heatmap",
            "Latency distribution",
            "Arrivals per latency bucket.",
            [(f"sum by (le) (increase(probe_event_latency_seconds_bucket{{{SEL}}}[$__rate_interval]))", "{{le}}")],
            (12, 6, 12, 8),
            "s",
            options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        ),
    ]


def overview() -> list[dict[str, Any]]:
    return [*(stat(*spec) for spec in OVERVIEW), alert_list((0, 5, 24, 6))]


def graphs(table: tuple) -> list[dict[str, Any]]:
    return [timeseries(*spec) for spec in table]
