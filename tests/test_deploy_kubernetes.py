"""deploy/kubernetes/ and the several-regions example, checked offline: the manifests against
Kubernetes' own schemas (kubernetes-validate), the PrometheusRule's rules with promtool, the
ConfigMap's datasets list through the probe's own configuration loader, shard by shard."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from probe_deploy import alerting
from shared import config
from tests.helpers import ROOT
from tests.test_deploy import PARAMS, RULES, run, tool

KUBE = ROOT / "deploy" / "kubernetes"
MANIFESTS = KUBE / "probe.yaml"
POD_MONITOR = KUBE / "podmonitor.yaml"
PROMETHEUS_RULE = KUBE / "probe-rules.yaml"
FEDERATION = ROOT / "deploy" / "prometheus" / "federation.yml"
# The custom resources of the Prometheus Operator: not in Kubernetes' schemas, checked below.
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict:
    (doc,) = [d for path in (MANIFESTS, POD_MONITOR, PROMETHEUS_RULE) for d in documents(path) if d["kind"] == kind]
    return doc


def validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_manifests_pass_kubernetes_schemas() -> None:
    docs = [d for path in sorted(KUBE.glob("*.yaml")) for d in documents(path)]
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "Service", "StatefulSet", "PodMonitor", "PrometheusRule"} <= kinds
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS:
            validate(doc)


def test_the_validator_catches_a_broken_statefulset() -> None:
    broken = copy.deepcopy(by_kind("StatefulSet"))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    misspelt = copy.deepcopy(by_kind("StatefulSet"))
    misspelt["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(misspelt)


def env_of(statefulset: dict) -> dict[str, dict]:
    return {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_pod_ordinal_is_the_shard_and_n_is_the_replica_count() -> None:
    sts = by_kind("StatefulSet")
    env = env_of(sts)
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["PROBE_SHARD"]["value"] == f"$(POD_INDEX)/{sts['spec']['replicas']}"
    names = list(env)
    assert names.index("POD_INDEX") < names.index("PROBE_SHARD")  # $(VAR) expands only earlier variables
    # A volume per pod for the store, where the image keeps it.
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    assert "PROBE_DB_PATH=/data/probe.sqlite3" in (ROOT / "Dockerfile").read_text()


def test_every_shard_of_the_configmap_list_watches_part_of_it_and_together_all(tmp_path: Path) -> None:
    sts = by_kind("StatefulSet")
    replicas = sts["spec"]["replicas"]
    path = tmp_path / "probe.yaml"
    path.write_text(by_kind("ConfigMap")["data"]["probe.yaml"])
    watched: list[str] = []
    for ordinal in range(replicas):
        shard = env_of(sts)["PROBE_SHARD"]["value"].replace("$(POD_INDEX)", str(ordinal))
        cfg = config.load({"PROBE_CONFIG": str(path), "PROBE_SHARD": shard}, for_reading=True)
        assert cfg.datasets, f"shard {shard} watches nothing"
        watched += [ds.name for ds in cfg.datasets]
    assert sorted(watched) == sorted(ds.name for ds in cfg.configured)


def test_the_pod_monitor_scrapes_the_statefulsets_pods_as_the_rules_job() -> None:
    pod_monitor, sts = by_kind("PodMonitor"), by_kind("StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert endpoint["port"] in ports
    job = next(r for r in endpoint["relabelings"] if r["targetLabel"] == "job")
    params = alerting.load_params(PARAMS)
    assert params.selector == f'job="{job["replacement"]}"'


def test_the_prometheus_rule_is_generated_from_the_parameters_and_passes_promtool(tmp_path: Path) -> None:
    params = alerting.load_params(PARAMS)
    assert PROMETHEUS_RULE.read_text() == alerting.render_prometheus_rule(params), "run `make deploy`"
    spec = by_kind("PrometheusRule")["spec"]
    assert spec == yaml.safe_load(RULES.read_text())  # the very rules Prometheus loads elsewhere
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(spec))
    out = run(tool("promtool"), "check", "rules", str(rules))
    assert "SUCCESS" in out


def test_the_several_regions_example_is_a_valid_prometheus_config() -> None:
    run(tool("promtool"), "check", "config", str(FEDERATION))
    doc = yaml.safe_load(FEDERATION.read_text())
    (federate,) = doc["scrape_configs"]
    assert federate["honor_labels"] is True and federate["metrics_path"] == "/federate"
    params = alerting.load_params(PARAMS)
    assert federate["params"]["match[]"] == ["{" + params.selector + "}"]
