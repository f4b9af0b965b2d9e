"""The Grafana dashboard of the probe, as plain data.

Built here rather than with a dashboard SDK: it is a list of about twenty panels
of three kinds, and a few small functions over dicts keep it readable without a
dependency. deploy/grafana/dashboards/dataplatform-probe.json is its output (a
test keeps the two in step), importable as it is and provisioned by the example
compose stack. The last row repeats the original service's dashboard panels, so
its users find them again.
"""

from __future__ import annotations

import json
from typing import Any

UID = "dataplatform-probe"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'dataset=~"$dataset"'


def _target(expr: str, legend: str = "", ref: int = 0) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + ref)}


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    pos: tuple[int, int, int, int],
    unit: str = "short",
    **extra: Any,
) -> dict[str, Any]:
    x, y, w, h = pos
    panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [_target(expr, legend, i) for i, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    panel.update(extra)
    return panel


def timeseries(
    title: str, description: str, targets: list[tuple[str, str]], pos: tuple[int, int, int, int], unit: str = "short"
) -> dict[str, Any]:
    return _panel("timeseries", title, description, targets, pos, unit)


def stat(title: str, description: str, expr: str, pos: tuple[int, int, int, int], unit: str = "short") -> dict:
    return _panel("stat", title, description, [(expr, "{{dataset}}")], pos, unit)


def row(title: str, y: int, collapsed: bool = False, panels: list | None = None) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": collapsed,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": panels or [],
    }


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


def panels() -> list[dict[str, Any]]:
    overview = [
        stat(
            "Subscribed",
            "1 while the listener is subscribed to the dataset's websocket.",
            f"max by (dataset) (probe_websocket_connected{{{SEL}}})",
            (0, 1, 4, 4),
        ),
        stat(
            "Staleness",
            "Time since the newest of the probe's events arrived.",
            f"time() - max by (dataset) (probe_last_event_received_timestamp_seconds{{{SEL}}})",
            (4, 1, 4, 4),
            "s",
        ),
        stat(
            "Loss (1h)",
            "Lost / posted over the last hour; events the probe could not watch are not counted.",
            f"sum by (dataset) (increase(probe_events_lost_total{{{SEL}}}[1h])) / "
            f"sum by (dataset) (increase(probe_events_posted_total{{{SEL}}}[1h]))",
            (8, 1, 4, 4),
            "percentunit",
        ),
        stat(
            "Latency p99 (15m)",
            "99th percentile of send-to-arrival latency over 15 minutes.",
            f"histogram_quantile(0.99, sum by (dataset, le) (rate(probe_event_latency_seconds_bucket{{{SEL}}}[15m])))",
            (12, 1, 4, 4),
            "s",
        ),
        stat(
            "In flight",
            "Events posted and neither received nor judged yet.",
            f"sum by (dataset) (probe_events_in_flight{{{SEL}}})",
            (16, 1, 4, 4),
        ),
        stat("Probe up", "1 while Prometheus can scrape the probe.", 'min(up{job=~".*probe.*"})', (20, 1, 4, 4)),
    ]
    latency = [
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
        _panel(
            "heatmap",
            "Latency distribution",
            "Arrivals per latency bucket.",
            [(f"sum by (le) (increase(probe_event_latency_seconds_bucket{{{SEL}}}[$__rate_interval]))", "{{le}}")],
            (12, 6, 12, 8),
            "s",
            options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        ),
    ]
    events = [
        timeseries(
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
        timeseries(
            "Post errors by reason",
            "Events whose post failed for good, per minute.",
            [by_label("probe_event_post_errors_total", "reason")],
            (12, 15, 12, 8),
        ),
    ]
    connection = [
        timeseries(
            "Websocket connected",
            "1 while subscribed.",
            [(f"max by (dataset) (probe_websocket_connected{{{SEL}}})", "{{dataset}}")],
            (0, 24, 8, 7),
        ),
        timeseries(
            "Disconnects by reason",
            "Ends of a subscription, per minute.",
            [by_label("probe_websocket_disconnects_total", "reason")],
            (8, 24, 8, 7),
        ),
        timeseries(
            "Staleness",
            "Seconds since the newest of the probe's events arrived.",
            [(f"time() - max by (dataset) (probe_last_event_received_timestamp_seconds{{{SEL}}})", "{{dataset}}")],
            (16, 24, 8, 7),
            "s",
        ),
    ]
    sender = [
        timeseries(
            "In flight",
            "Events posted and neither received nor judged yet.",
            [(f"sum by (dataset) (probe_events_in_flight{{{SEL}}})", "{{dataset}}")],
            (0, 32, 8, 7),
        ),
        timeseries(
            "Skipped send slots",
            "Slots not used, per minute: stall or backpressure.",
            [by_label("probe_sender_skipped_slots_total", "reason")],
            (8, 32, 8, 7),
        ),
        timeseries(
            "Token requests",
            "Token requests to Keycloak per minute, by result.",
            [by_label("probe_token_requests_total", "result")],
            (16, 32, 8, 7),
        ),
        timeseries(
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
        timeseries(
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
    ]
    original = [
        timeseries(
            "Events (original)",
            "The original dashboard's counters.",
            [
                ("probe_events_posted_total", "posted"),
                ("probe_events_received_total", "received"),
                ("probe_events_lost_total", "lost"),
            ],
            (0, 48, 12, 7),
        ),
        timeseries(
            "Events per minute (original)",
            "As the original dashboard plotted them.",
            [
                ("rate(probe_events_posted_total[1m]) * 60", "posted"),
                ("rate(probe_events_received_total[1m]) * 60", "received"),
                ("rate(probe_events_lost_total[1m]) * 60", "lost"),
            ],
            (12, 48, 12, 7),
        ),
        timeseries(
            "Latency (original)",
            "The newest first arrival's latency, and its 10-minute view.",
            [
                ("probe_event_latency", "latest"),
                ("avg_over_time(probe_event_latency[10m])", "avg 10m"),
                ("max_over_time(probe_event_latency[10m])", "max 10m"),
                ("quantile_over_time(0.90, probe_event_latency[10m])", "p90 10m"),
            ],
            (0, 55, 12, 7),
            "s",
        ),
        timeseries(
            "Missing share (original)",
            "Share of the events sent in the window that have not arrived.",
            [
                ("probe_events_missing_1m_share", "1m"),
                ("probe_events_missing_10m_share", "10m"),
                ("probe_events_missing_1h_share", "1h"),
            ],
            (12, 55, 12, 7),
            "percentunit",
        ),
    ]
    return [
        row("Overview", 0),
        *overview,
        row("Latency", 5),
        *latency,
        row("Events", 14),
        *events,
        row("Connection", 23),
        *connection,
        row("Sender and messages", 31),
        *sender,
        row("The original service's panels", 47, collapsed=True, panels=original),
    ]


def dashboard() -> dict[str, Any]:
    """The dashboard; panel ids are numbered in reading order."""
    doc = {
        "uid": UID,
        "title": "Dataplatform probe",
        "description": "End-to-end health of the dataplatform's event pipeline, as the probe measures it.",
        "tags": ["dataplatform", "probe"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "dataset",
                    "label": "Dataset",
                    "type": "query",
                    "datasource": DS,
                    "query": {"query": "label_values(probe_events_posted_total, dataset)", "refId": "datasets"},
                    "definition": "label_values(probe_events_posted_total, dataset)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "refresh": 2,
                    "current": {},
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels(),
    }
    for number, panel in enumerate(all_panels(doc), start=1):
        panel["id"] = number
    return doc


def all_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out = []
    for panel in doc["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
