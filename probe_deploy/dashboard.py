"""The Grafana dashboard of the probe, as plain data.

Built here rather than with a dashboard SDK (grafana-foundation-sdk was weighed: the
docs/alerting.md says why not): it is a list of about twenty panels of four kinds, and a few small
functions over dicts keep it readable without a runtime dependency of `probe dashboard`.
deploy/grafana/dashboards/dataplatform-probe.json is its output (a test keeps the two in
step), importable as it is and provisioned by the example compose stack. An overview with
the alert list comes first, then one row per dataset (Grafana repeats it), and last the
original service's dashboard panels, so its users find them again.
"""

from __future__ import annotations

import json
from typing import Any

from probe_deploy.grafana import DS, row
from probe_deploy.panels import CONNECTION, EVENTS, ORIGINAL, SEL, SENDER, TARGET, graphs, latency, overview

UID = "dataplatform-probe"
# The rules' own selector (alert-params.yaml's `selector`; a test keeps the two in step) is the
# `job` variable's default, so the panels show what the alerts judge, on every instance chosen.
JOB = "dataplatform-probe"


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


def panels() -> list[dict[str, Any]]:
    """The rows: the overview, one row per dataset (Grafana repeats it), the original's panels."""
    per_dataset = [*latency(), *graphs(EVENTS), *graphs(CONNECTION), *graphs(SENDER)]
    original = graphs(ORIGINAL)
    # The panels below the overview's alert list move down with it.
    for panel in [*per_dataset, *original]:
        panel["gridPos"]["y"] += 6
    return [
        row("Overview", 0),
        *overview(),
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
