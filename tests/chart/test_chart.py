"""The Helm chart: lint, render variants, schema-checked values, and the plain
install manifest kept in sync. Helm is built from its Go module (hack/helm.sh);
these tests fail, not skip, when it cannot be built."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from kubento.builders.bento import DEFAULT_RUNTIME_IMAGE

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubento"

MODELS = {
    "Deployment": client.V1Deployment,
    "ServiceAccount": client.V1ServiceAccount,
    "ClusterRole": client.V1ClusterRole,
    "ClusterRoleBinding": client.V1ClusterRoleBinding,
    "Role": client.V1Role,
    "RoleBinding": client.V1RoleBinding,
    "Namespace": client.V1Namespace,
    "CustomResourceDefinition": client.V1CustomResourceDefinition,
    "Service": client.V1Service,
    "ConfigMap": client.V1ConfigMap,
    "PodDisruptionBudget": client.V1PodDisruptionBudget,
    "NetworkPolicy": client.V1NetworkPolicy,
    "ValidatingAdmissionPolicy": client.V1ValidatingAdmissionPolicy,
    "ValidatingAdmissionPolicyBinding": client.V1ValidatingAdmissionPolicyBinding,
    "FlowSchema": client.V1FlowSchema,
    "PriorityLevelConfiguration": client.V1PriorityLevelConfiguration,
}
# prometheus-operator's kinds: no client model (e2e/test_monitoring.py runs what they configure).
MONITORING = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def render(helm: str, *args: str) -> list[dict]:
    proc = subprocess.run(
        [helm, "template", "kubento", str(CHART), "--namespace", "kubento-system", "--kube-version", "1.34.4", *args],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    for doc in docs:
        if doc["kind"] in MONITORING:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"], doc["kind"]
            continue
        MODELS[doc["kind"]].model_validate(doc)  # every object is a valid Kubernetes object
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_helm_lint_is_clean(helm):
    proc = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_default_install_is_cluster_wide_with_least_privilege(helm):
    docs = render(helm)
    dep = by_kind(docs, "Deployment")[0]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--all-namespaces" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    assert set(roles) == {"kubento", "kubento-discovery"}
    # The one Role: leader election, a Lease in the operator's namespace.
    [lease_role] = by_kind(docs, "Role")
    assert lease_role["metadata"]["namespace"] == "kubento-system"
    assert lease_role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                    "verbs": ["get", "create", "update"]}]
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    secrets = [r for r in roles["kubento"]["rules"] if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]


def test_namespaced_install_gets_a_role_per_namespace(helm):
    docs = render(helm, "--set", "watch.namespaces={team-a,team-b}")
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=team-a" in container["args"] and "--namespace=team-b" in container["args"]
    assert "--all-namespaces" not in container["args"]
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "Role")) == ["kubento-system", "team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["kubento-system", "team-a", "team-b"]
    assert [r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")] == ["kubento-discovery"]


def runtime_image_env(pod) -> str:
    return next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == "KUBENTO_RUNTIME_IMAGE")


def test_image_and_scheduling_values_are_used(helm):
    docs = render(
        helm, "--set", "image.registry=registry.example:5000/ml", "--set", "image.tag=9.9",
        "--set", "nodeSelector.pool=system", "--set", "logFormat=plain",
    )
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    # One registry and one tag for both images: the operator's and the runtime image it gives models.
    assert pod["containers"][0]["image"] == "registry.example:5000/ml/kubento-operator:9.9"
    assert runtime_image_env(pod) == "registry.example:5000/ml/bentoml-runtime:9.9"
    assert pod["nodeSelector"] == {"pool": "system"}
    assert "--log-format=plain" in pod["containers"][0]["args"]


def test_images_default_to_the_charts_version_and_runtime_image_overrides(helm):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pod = by_kind(render(helm), "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"kubento.local/kubento-operator:{chart['appVersion']}"
    assert runtime_image_env(pod) == f"kubento.local/bentoml-runtime:{chart['appVersion']}"
    # `kubento run` outside the chart falls back to the same image.
    assert runtime_image_env(pod) == DEFAULT_RUNTIME_IMAGE
    pod = by_kind(render(helm, "--set", "runtimeImage=other.example/runtime:2"), "Deployment")[0]["spec"]["template"]["spec"]
    assert runtime_image_env(pod) == "other.example/runtime:2"


def test_gpu_settings_reach_the_operator_as_it_reads_them(helm):
    from kubento.builders.defaults import Gpus
    from kubento.controller.config import Config

    pod = by_kind(render(helm), "Deployment")[0]["spec"]["template"]["spec"]
    assert "KUBENTO_GPUS" not in {e["name"] for e in pod["containers"][0]["env"]}
    pod = by_kind(render(helm, "--set", "gpus.resource=amd.com/gpu",
                         "--set", "gpus.types.mi300x.node\\.example/accelerator=mi300x"),
                  "Deployment")[0]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert Config.from_env(env).gpus == Gpus("amd.com/gpu", (("mi300x", (("node.example/accelerator", "mi300x"),)),))


@pytest.mark.parametrize(
    "flag, field",
    [("gpus.resource=gpu", "gpus"), ("gpus.colour=red", "gpus"), ("logFormat=xml", "logFormat"), ("image.registry=registry.example/ml/", "image.registry"),
     ("image.tag=a:b", "image.tag"), ("resyncSeconds=1", "resyncSeconds"), ("watch.namespaces={Bad_NS}", "watch.namespaces"), ("unknownKey=1", "unknownKey")],
)
def test_values_schema_rejects_bad_values(helm, flag, field):
    proc = subprocess.run(
        [helm, "template", "kubento", str(CHART), "--kube-version", "1.34.4", "--set", flag], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert field.split(".")[0] in proc.stderr, proc.stderr


def test_chart_crd_is_the_generated_one():
    assert (CHART / "crds").is_dir()
    assert (CHART / "crds" / "serving.kubento.io_modeldeployments.yaml").read_text() == (
        ROOT / "crds" / "serving.kubento.io_modeldeployments.yaml"
    ).read_text()


def test_dist_install_yaml_is_rendered_from_the_chart(helm, tmp_path):
    out, rules = tmp_path / "install.yaml", tmp_path / "kubento-rules.yaml"
    subprocess.run([str(ROOT / "hack" / "render-install.sh"), str(out), str(rules)], check=True, capture_output=True)
    assert (ROOT / "dist" / "install.yaml").read_text() == out.read_text(), "run make install-yaml"
    assert (ROOT / "dist" / "kubento-rules.yaml").read_text() == rules.read_text(), "run make install-yaml"
    kinds = [d["kind"] for d in yaml.safe_load_all(out.read_text()) if d]
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]
    assert "Deployment" in kinds


# ------------------------------------------------------------------ monitoring


def test_monitoring_defaults_need_no_prometheus_operator(helm):
    docs = render(helm)
    assert not [d for d in docs if d["kind"] in MONITORING]
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"  # files/prometheus-scrape.yaml
    dashboards = by_kind(docs, "ConfigMap")
    assert [d["metadata"]["labels"]["grafana_dashboard"] for d in dashboards] == ["1"]
    assert json.loads(dashboards[0]["data"]["kubento.json"]) == json.loads(
        (CHART / "files" / "grafana-dashboard.json").read_text())


def test_monitors_and_rules_render_when_enabled(helm):
    docs = render(helm, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
                  "--set", "alerts.prometheusRule.enabled=true", "--set", "alerts.configMap.enabled=true",
                  "--set", "alerts.prometheusRule.labels.release=prom", "--set", "alerts.errorRatio.threshold=0.2",
                  "--set", "alerts.modelNotReady.for=3m", "--set", "alerts.labels.team=ml")
    service = next(d for d in by_kind(docs, "Service") if d["metadata"]["name"] == "kubento-metrics")
    monitor = by_kind(docs, "ServiceMonitor")[0]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    dep = by_kind(docs, "Deployment")[0]
    assert service["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["honorLabels"] is True and endpoint["port"] == "metrics"
    assert {"targetLabel": "job", "replacement": "kubento-operator", "action": "replace"} in endpoint["relabelings"]

    pods = by_kind(docs, "PodMonitor")[0]["spec"]
    assert pods["namespaceSelector"] == {"any": True}
    assert pods["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "kubento",
                                                "app.kubernetes.io/component": "model-server"}
    assert {r["targetLabel"] for r in pods["podMetricsEndpoints"][0]["relabelings"]} == {"model", "revision"}

    rule = by_kind(docs, "PrometheusRule")[0]
    assert rule["metadata"]["labels"]["release"] == "prom"
    plain = yaml.safe_load(by_kind(docs, "ConfigMap")[-1]["data"]["kubento-rules.yaml"])
    assert plain["groups"] == rule["spec"]["groups"]  # one set of rules, two forms
    alerts = {r["alert"]: r for g in plain["groups"] for r in g["rules"]}
    assert ") > 0.2" in alerts["KubentoModelErrorRatioHigh"]["expr"]
    assert alerts["KubentoModelNotReady"]["for"] == "3m"
    assert all(r["labels"]["team"] == "ml" for r in alerts.values())


def test_pod_monitor_follows_watched_namespaces(helm):
    docs = render(helm, "--set", "metrics.podMonitor.enabled=true", "--set", "watch.namespaces={team-a,team-b}")
    assert by_kind(docs, "PodMonitor")[0]["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_documented_scrape_config_keeps_the_labels_the_rules_use():
    """files/prometheus-scrape.yaml (e2e/test_monitoring.py runs it) and the
    PodMonitor label model servers alike."""
    jobs = {j["job_name"]: j for j in yaml.safe_load((CHART / "files" / "prometheus-scrape.yaml").read_text())["scrape_configs"]}
    assert set(jobs) == {"kubento-operator", "kubento-models"}
    assert jobs["kubento-operator"]["honor_labels"] is True
    targets = {r.get("target_label") for r in jobs["kubento-models"]["relabel_configs"]}
    assert {"namespace", "pod", "model", "revision"} <= targets


@pytest.mark.parametrize("flag, field", [
    ("alerts.errorRatio.threshold=2", "threshold"),
    ("alerts.modelNotReady.for=ten", "for"),
    ("metrics.podMonitor.interval=fast", "interval"),
    ("grafana.dashboard.color=red", "color"),
])
def test_values_schema_rejects_bad_monitoring_values(helm, flag, field):
    proc = subprocess.run([helm, "template", "kubento", str(CHART), "--kube-version", "1.34.4", "--set", flag],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr


def test_two_replicas_elect_a_leader_spread_across_nodes_and_keep_one_through_a_drain(helm):
    one = render(helm)
    assert by_kind(one, "PodDisruptionBudget") == []
    docs = render(helm, "--set", "replicaCount=2")
    dep = by_kind(docs, "Deployment")[0]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["KUBENTO_LEADER_ELECTION_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    [pdb] = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
