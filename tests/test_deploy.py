"""What deploy/ ships: the rules (checked and unit-tested by promtool), the dashboard, the example stack."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from probe_deploy import alerting, dashboard
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
PARAMS = DEPLOY / "prometheus" / "alert-params.yaml"
RULES = DEPLOY / "prometheus" / "probe-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "probe-rules.test.yml"
INCIDENT_TESTS = DEPLOY / "prometheus" / "tests" / "probe-incidents.test.yml"
FLEET_TESTS = DEPLOY / "prometheus" / "tests" / "probe-fleet.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "dataplatform-probe.json"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is required: `make test` installs it (Debian packages prometheus, prometheus-alertmanager)"
        )
    return path


def run(*args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def alerts() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_committed_rules_are_generated_from_the_committed_parameters() -> None:
    assert RULES.read_text() == alerting.render(alerting.load_params(PARAMS)), "run `make deploy`"


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD.read_text() == dashboard.render(), "run `make deploy`"


def test_promtool_checks_the_rules_and_the_prometheus_config() -> None:
    run(tool("promtool"), "check", "rules", str(RULES))
    run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    run(tool("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))


def test_promtool_rule_unit_tests_pass() -> None:
    out = run(
        tool("promtool"), "test", "rules", RULE_TESTS.name, INCIDENT_TESTS.name, FLEET_TESTS.name, cwd=RULE_TESTS.parent
    )
    assert out.count("SUCCESS") == 3


def test_every_alert_fires_in_one_unit_test_and_stays_quiet_in_another() -> None:
    cases = [
        case
        for path in (RULE_TESTS, INCIDENT_TESTS, FLEET_TESTS)
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alerts():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never fires in a unit test"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} is never shown quiet in a unit test"


def test_every_alert_says_what_it_is_and_links_its_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = {heading.lower() for heading in re.findall(r"^## (\w+)$", runbook, flags=re.M)}
    names = [rule["alert"] for rule in alerts()]
    assert len(names) >= 17 and len(set(names)) == len(names)
    for rule in alerts():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and "\n" not in notes["summary"], rule["alert"]
        assert (
            "{{ $value" in notes["description"]
            or "$labels" in notes["description"]
            or rule["alert"]
            in (
                "ProbeTargetDown",
                "ProbeTargetMissing",
                "ProbeMetricsMissing",
                "ProbeListenerNotSubscribed",
            )
        ), f"{rule['alert']}: the description should show the value"
        anchor = notes["runbook"].rsplit("#", 1)[1]
        assert notes["runbook"].split("#")[0].endswith("docs/runbook.md") and anchor in sections, rule["alert"]
    assert sections == {name.lower() for name in names}  # no section for an alert that does not exist


def test_the_runbook_is_named_until_an_operator_gives_its_address() -> None:
    shipped = [(DEPLOY / "prometheus" / name).read_text() for name in ("alert-params.yaml", "probe-rules.yml")]
    assert not any("your-org" in text or "example.com" in text for text in shipped)
    for rule in alerts():
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{rule['alert'].lower()}"
        assert "runbook_url" not in rule["annotations"], rule["alert"]
    url = "https://git.example.org/probe/blob/main/docs/runbook.md"
    doc = alerting.rules_document(alerting.load_params(PARAMS, {"runbook_url": url}))
    stale = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "ProbeEventsStale")
    assert stale["annotations"]["runbook_url"] == f"{url}#probeeventsstale"


def test_pages_are_the_probe_down_and_one_alert_per_dataset_outage() -> None:
    """Critical means a page: the probe itself, and the three ways a dataset's pipeline fails
    (nothing arrives, some are dropped, the probe cannot see) and a fast SLO burn; everything
    that follows from those is a ticket or inhibited (deploy/alertmanager/alertmanager.yml)."""
    pages = {rule["alert"] for rule in alerts() if rule["labels"]["severity"] == "critical"}
    assert pages == {
        "ProbeTargetDown",
        "ProbeTargetMissing",
        "ProbeMetricsMissing",
        "ProbeEventsStale",
        "ProbeEventLoss",
        "ProbeBlind",
        "ProbeSLOBurnFast",
        # More than one probe: a dataset no live instance watches, and a group's pipeline pages.
        "ProbeDatasetUnwatched",
        "ProbeGroupEventsStale",
        "ProbeGroupEventLoss",
        "ProbeGroupSLOBurnFast",
    }
    routing = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    (page_route,) = [r for r in routing["route"]["routes"] if r["matchers"] == ['severity="critical"']]
    assert "alertname" not in page_route["group_by"] and "dataset" in page_route["group_by"]
    inhibited = {}
    for rule in routing["inhibit_rules"]:
        (source,) = rule["source_matchers"]
        inhibited.setdefault(source, []).append((rule["target_matchers"], rule["equal"]))
    followers = 'alertname=~"ProbeEventLoss|ProbeSLOBurnFast|ProbeSLOBurnSlow|ProbeLatencyHigh"'
    assert inhibited['alertname="ProbeEventsStale"'] == [([followers], ["job", "instance", "dataset"])]


def test_parameters_are_checked_with_the_key_named(tmp_path: Path) -> None:
    doc = yaml.safe_load(PARAMS.read_text())
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({**doc, "loss_for": "five minutes"}))
    with pytest.raises(alerting.ParamsError, match="loss_for"):
        alerting.load_params(bad)
    bad.write_text(yaml.safe_dump({k: v for k, v in doc.items() if k != "loss_ratio"}))
    with pytest.raises(alerting.ParamsError, match=r"missing parameter.*loss_ratio"):
        alerting.load_params(bad)
    bad.write_text(yaml.safe_dump({**doc, "los_ratio": 0.1}))
    with pytest.raises(alerting.ParamsError, match=r"unknown parameter.*los_ratio"):
        alerting.load_params(bad)
    scaled = alerting.load_params(PARAMS, {"loss_window": "30s", "selector": 'job="probe"'})
    assert 'probe_events_lost_total{job="probe"}[30s]' in alerting.render(scaled)


def test_the_slo_latency_is_a_bucket_of_the_default_histogram() -> None:
    from shared.config import DEFAULT_LATENCY_BUCKETS

    params = alerting.load_params(PARAMS)
    assert params.slo_latency_seconds in DEFAULT_LATENCY_BUCKETS


def test_the_dashboard_has_its_variables_and_every_panel_a_query() -> None:
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["dataset"]["type"] == "query" and "label_values" in variables["dataset"]["definition"]
    panels = [p for p in dashboard.all_panels(doc) if p["type"] != "row"]
    assert len({p["id"] for p in dashboard.all_panels(doc)}) == len(dashboard.all_panels(doc))
    kinds = {p["type"] for p in panels}
    assert {"timeseries", "heatmap", "stat"} <= kinds
    for panel in panels:
        if panel["type"] == "alertlist":  # Prometheus's alerts, filtered by label: no query of its own
            assert panel["options"]["alertInstanceLabelFilter"] == '{component="dataplatform-probe"}'
            continue
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ours = [t["expr"] for p in doc["panels"] if p["type"] != "row" for t in p.get("targets", [])]
    assert all("$dataset" in expr for expr in ours if "probe_" in expr)


def test_every_dashboard_query_has_the_rules_selector_and_the_graphs_are_annotated() -> None:
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert f'job="{variables["job"]["query"]}"' == alerting.load_params(PARAMS).selector
    assert variables["instance"]["includeAll"] and "$job" in variables["instance"]["definition"]
    exprs = [t["expr"] for p in dashboard.all_panels(doc) for t in p.get("targets", [])]
    assert exprs and all('job="$job", instance=~"$instance"' in expr for expr in exprs), exprs
    names = {a["name"]: a for a in doc["annotations"]["list"]}
    assert {"Stack restarts", "Subscription changes", "Firing alerts"} <= set(names)
    assert "ALERTS{" in names["Firing alerts"]["expr"] and "$job" in names["Stack restarts"]["expr"]
    assert [p["type"] for p in dashboard.all_panels(doc)].count("alertlist") == 1
    repeated = [p for p in doc["panels"] if p["type"] == "row" and p.get("repeat") == "dataset"]
    assert len(repeated) == 1 and variables["dataset"]["multi"] and variables["dataset"]["includeAll"]


def test_the_compose_stack_refers_to_files_that_exist_and_ports_that_agree() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"probe", "prometheus", "alertmanager", "grafana", "emulator"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    assert (DEPLOY / services["probe"]["build"] / "Dockerfile").exists()
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (scrape,) = prometheus["scrape_configs"]
    assert scrape["static_configs"][0]["targets"] == ["probe:8000"]
    assert 'job="' + scrape["job_name"] + '"' == alerting.load_params(PARAMS).selector
    assert "8000:8000" in services["probe"]["ports"]
    (am_target,) = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am_target == "alertmanager:9093" and "9093:9093" in services["alertmanager"]["ports"]
    assert "/etc/prometheus/probe-rules.yml" in " ".join(services["prometheus"]["volumes"])
    assert prometheus["rule_files"] == ["probe-rules.yml"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "dataplatform-probe.yml").read_text()
    )
    dash_path = provider["providers"][0]["options"]["path"]
    assert any(
        v.endswith(dash_path + ":ro") and v.startswith("./grafana/dashboards") for v in services["grafana"]["volumes"]
    )
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert (
        datasource["datasources"][0]["url"] == "http://prometheus:9090"
        and "9090:9090" in services["prometheus"]["ports"]
    )
