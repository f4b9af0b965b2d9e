"""Grafana's panel kinds as small functions over dicts: no dashboard SDK for about twenty panels."""

from __future__ import annotations

from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}


def _target(expr: str, legend: str = "", ref: int = 0) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + ref)}


def panel(
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
    return panel("timeseries", title, description, targets, pos, unit)


def stat(title: str, description: str, expr: str, pos: tuple[int, int, int, int], unit: str = "short") -> dict:
    return panel("stat", title, description, [(expr, "{{dataset}}")], pos, unit)


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
