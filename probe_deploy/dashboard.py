"""The Grafana dashboard of the probe, as plain data.

Built here rather than with a dashboard SDK (grafana-foundation-sdk was weighed: the
README says why not): it is a list of about twenty panels of four kinds, and a few small
functions over dicts keep it readable without a runtime dependency of `probe dashboard`.
deploy/grafana/dashboards/dataplatform-probe.json is its output (a test keeps the two in
step), importable as it is and provisioned by the example compose stack. An overview with
the alert list comes first, then one row per dataset (Grafana repeats it), and last the
original service's dashboard panels, so its users find them again.
"""

from __future__ import annotations

import json
from typing import Any

UID = "dataplatform-probe"
DS = {"type": "prometheus", "uid": "${datasource}"}
# The rules' own selector (alert-params.yaml's `selector`; a test keeps the two in step) is the
# `job` variable's default, so the panels show what the alerts judge, on every instance chosen.
JOB = "dataplatform-probe"
TARGET = 'job="$job", instance=~"$instance"'
SEL = f'{TARGET}, dataset=~"$dataset"'


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


def row(
    title: str, y: int, collapsed: bool = False, panels: list | None = None, repeat: str | None = None
) -> dict[str, Any]:
    out = {
        "type": "row",
        "title": title,
        "collapsed": collapsed,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": panels or [],
    }
    if repeat:
        out["repeat"] = repeat
    return out


def alert_list(pos: tuple[int, int, int, int]) -> dict[str, Any]:
    """Grafana's alert list: the probe's alerts from every alert source (Prometheus's rules among them, as
    Grafana reads them from the data source), picked by their `component` label; no query of its own."""
    x, y, w, h = pos
    return {
        "type": "alertlist",
        "title": "Probe alerts",
        "description": "The probe's alerts firing or pending in Prometheus (deploy/prometheus/probe-rules.yml).",
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "options": {
            "viewMode": "list",
            "groupMode": "default",
            "groupBy": [],
            "maxItems": 20,
            "sortOrder": 1,
            "dashboardAlerts": False,
            "alertName": "",
            "alertInstanceLabelFilter": '{component="dataplatform-probe"}',
            "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": False, "error": True},
        },
    }


def annotations() -> list[dict[str, Any]]:
    """Marks on every graph: stack restarts, subscription changes and firing alerts."""

    def prometheus(name: str, expr: str, colour: str, title: str, text: str, tags: str) -> dict[str, Any]:
        return {
            "name": name,
            "datasource": DS,
            "enable": True,
            "hide": False,
            "iconColor": colour,
            "expr": expr,
            "step": "30s",
            "titleFormat": title,
            "textFormat": text,
            "tagKeys": tags,
            "useValueForTime": False,
        }

    return [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        prometheus(
            "Stack restarts",
            # `probe run` starts with fresh counters: a reset of the posted count is a restart.
            f"sum by (job, instance) (resets(probe_events_posted_total{{{TARGET}}}[1m])) > 0",
            "blue",
            "stack restart",
            "{{instance}}: the probe's counters started again",
            "instance",
        ),
        prometheus(
            "Subscription changes",
            f"sum by (instance, dataset) (changes(probe_websocket_connected{{{SEL}}}[1m])) > 0",
            "orange",
            "subscription changed",
            "{{dataset}} on {{instance}}: the listener subscribed or lost its subscription",
            "dataset",
        ),
        prometheus(
            "Firing alerts",
            # Absence alerts (ProbeDown) carry no instance: the empty value matches too.
            'ALERTS{alertstate="firing", component="dataplatform-probe", job=~"$job|", instance=~"$instance|"}',
            "red",
            "{{alertname}}",
            "{{alertname}} {{dataset}} ({{severity}})",
            "alertname,severity,dataset",
        ),
    ]


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
        stat("Probe up", "1 while Prometheus can scrape the probe.", f"min(up{{{TARGET}}})", (20, 1, 4, 4)),
        alert_list((0, 5, 24, 6)),
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
                (f"probe_events_posted_total{{{TARGET}}}", "posted"),
                (f"probe_events_received_total{{{TARGET}}}", "received"),
                (f"probe_events_lost_total{{{TARGET}}}", "lost"),
            ],
            (0, 48, 12, 7),
        ),
        timeseries(
            "Events per minute (original)",
            "As the original dashboard plotted them.",
            [
                (f"rate(probe_events_posted_total{{{TARGET}}}[1m]) * 60", "posted"),
                (f"rate(probe_events_received_total{{{TARGET}}}[1m]) * 60", "received"),
                (f"rate(probe_events_lost_total{{{TARGET}}}[1m]) * 60", "lost"),
            ],
            (12, 48, 12, 7),
        ),
        timeseries(
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
        timeseries(
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
    ]
    # One row per dataset chosen (Grafana repeats it); the panels below it move down with it.
    per_dataset = [*latency, *events, *connection, *sender]
    for panel in [*per_dataset, *original]:
        panel["gridPos"]["y"] += 6
    return [
        row("Overview", 0),
        *overview,
        row("Dataset $dataset", 11, repeat="dataset"),
        *per_dataset,
        row("The original service's panels", 53, collapsed=True, panels=original),
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
                    "name": "job",
                    "label": "Job",
                    "description": "The probe's scrape job: the alert rules' selector (alert-params.yaml) by default.",
                    "type": "textbox",
                    "query": JOB,
                    "current": {"text": JOB, "value": JOB},
                    "hide": 0,
                },
                _query_variable("instance", "Instance", 'label_values(probe_build_info{job="$job"}, instance)'),
                _query_variable("dataset", "Dataset", f"label_values(probe_events_posted_total{{{TARGET}}}, dataset)"),
            ]
        },
        "annotations": {"list": annotations()},
        "panels": panels(),
    }
    for number, panel in enumerate(all_panels(doc), start=1):
        panel["id"] = number
    return doc


def _query_variable(name: str, label: str, definition: str) -> dict[str, Any]:
    """A multi-value variable from label values, "All" matching every value."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": definition, "refId": name},
        "definition": definition,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "current": {},
        "hide": 0,
    }


def all_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out = []
    for panel in doc["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
