"""The Helm chart: lint, render variants, schema-checked values, and the plain
install manifest kept in sync. Helm is built from its Go module (hack/helm.sh);
these tests fail, not skip, when it cannot be built."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client

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
}


def render(helm: str, *args: str) -> list[dict]:
    proc = subprocess.run(
        [helm, "template", "kubento", str(CHART), "--namespace", "kubento-system", "--kube-version", "1.34.4", *args],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    for doc in docs:
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
    assert by_kind(docs, "Role") == []
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
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "Role")) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["team-a", "team-b"]
    assert [r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")] == ["kubento-discovery"]


def test_image_and_scheduling_values_are_used(helm):
    docs = render(
        helm, "--set", "image.repository=registry.example/kubento", "--set", "image.tag=9.9",
        "--set", "nodeSelector.pool=system", "--set", "logFormat=plain",
    )
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/kubento:9.9"
    assert pod["nodeSelector"] == {"pool": "system"}
    assert "--log-format=plain" in pod["containers"][0]["args"]


@pytest.mark.parametrize(
    "flag, field",
    [("logFormat=xml", "logFormat"), ("resyncSeconds=1", "resyncSeconds"), ("watch.namespaces={Bad_NS}", "watch.namespaces"), ("unknownKey=1", "unknownKey")],
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
    out = tmp_path / "install.yaml"
    subprocess.run([str(ROOT / "hack" / "render-install.sh"), str(out)], check=True, capture_output=True)
    assert (ROOT / "dist" / "install.yaml").read_text() == out.read_text(), "run hack/render-install.sh"
    kinds = [d["kind"] for d in yaml.safe_load_all(out.read_text()) if d]
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]
    assert "Deployment" in kinds
