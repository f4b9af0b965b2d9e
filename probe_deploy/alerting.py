"""The probe's Prometheus alert and recording rules, generated from one file of parameters.

PromQL cannot take parameters, and windows and `for` durations cannot come from a
series, so the rules are generated: deploy/prometheus/alert-params.yaml is the one
place to tune them (probe_deploy/params.py), deploy/prometheus/probe-rules.yml is the
generated file that Prometheus loads (a test keeps the two in step), and the end-to-end
test generates test-scaled rules through the same parameters. This module assembles the
document; the expressions, the alerts and the fleet's alerts have modules of their own.
"""

from __future__ import annotations

from typing import Any

import yaml

from probe_deploy.alerts import instance_alerts
from probe_deploy.fleet import fleet_alerts, location_rules
from probe_deploy.params import AlertParams, ParamsError, load_params
from probe_deploy.promql import DELIVERY_GAP, WATCHING, delivery_gap, slo_error_ratio, watching

__all__ = ["AlertParams", "ParamsError", "load_params", "render", "render_prometheus_rule", "rules_document"]


def recording_rules(p: AlertParams) -> list[dict[str, Any]]:
    windows = dict.fromkeys(
        (p.burn_fast_long_window, p.burn_fast_short_window, p.burn_slow_long_window, p.burn_slow_short_window)
    )
    return [
        {"record": WATCHING, "expr": watching(p)},
        {"record": DELIVERY_GAP, "expr": delivery_gap(p)},
        *({"record": f"probe:slo_error_ratio:rate{w}", "expr": slo_error_ratio(p, w)} for w in windows),
        *location_rules(p),
    ]


def rules_document(p: AlertParams) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "dataplatform-probe-recording", "rules": recording_rules(p)},
            {"name": "dataplatform-probe-alerts", "rules": [*instance_alerts(p), *fleet_alerts(p)]},
        ]
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (expressions) as readable YAML blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render(p: AlertParams, source: str = "deploy/prometheus/alert-params.yaml") -> str:
    header = (
        f"# Generated from {source} by `probe rules`; change the parameters there, not this file.\n"
        "# Runbook: docs/runbook.md. Checked by promtool (check rules, test rules) in the tests.\n"
    )
    return header + yaml.dump(rules_document(p), Dumper=_BlockDumper, sort_keys=False, width=120)


def render_prometheus_rule(p: AlertParams, source: str = "deploy/prometheus/alert-params.yaml") -> str:
    """The same rules as a Prometheus Operator PrometheusRule (deploy/kubernetes/)."""
    header = (
        f"# Generated from {source} by `probe rules --prometheus-rule` (make deploy); change the parameters\n"
        "# there, not this file. The rules are those of deploy/prometheus/probe-rules.yml.\n"
    )
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "dataplatform-probe", "labels": {"app.kubernetes.io/name": "dataplatform-probe"}},
        "spec": rules_document(p),
    }
    return header + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=120)
