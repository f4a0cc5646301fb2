"""The pod fields against a real API server: every field reaches the
Deployment the operator applies, the Deployments kubento builds from them
are valid pods for the API server, and the overlay merges exactly as
Kubernetes' own strategic merge does (kubectl patch)."""

from __future__ import annotations

import json

import pytest

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import CONTAINER_SECURITY, deployment, pod_spec
from kubento.builders.meta import Owner
from kubento.builders.overlay import prepared
from tests.helpers import condition, wait_for
from tests.integration.conftest import get_json, newest_deployment
from tests.specs import FULL_SPEC, POD_SPEC, VALID_SPEC

ARCHIVE = {"bento": {"archive": {"uri": "pvc://models/iris.bento"}}}
OVERLAY = {
    "containers": [
        {"name": "auth-proxy", "image": "proxy:1", "args": ["--upstream", "http://localhost:3000"],
         "ports": [{"containerPort": 8443, "name": "https"}],
         "readinessProbe": {"tcpSocket": {"port": "https"}},
         "resources": {"requests": {"cpu": "50m"}, "limits": {"memory": "64Mi"}},
         "securityContext": {"readOnlyRootFilesystem": True}},
        {"name": "bento", "securityContext": {"readOnlyRootFilesystem": True}, "workingDir": "/srv", "tty": True},
    ],
    "initContainers": [
        {"name": "warm", "image": "busybox:1", "command": ["sh", "-c", "true"]},
        {"name": "shipper", "image": "fluent-bit:3", "restartPolicy": "Always",
         "lifecycle": {"preStop": {"sleep": {"seconds": 2}}}},
    ],
    "securityContext": {"runAsUser": 2000, "fsGroupChangePolicy": "OnRootMismatch", "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}]},
    "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["weights.local"]}],
    "dnsPolicy": "None",
    "dnsConfig": {"nameservers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": [{"name": "ndots", "value": "2"}]},
    "enableServiceLinks": False,
    "automountServiceAccountToken": False,
}
def docs_pods_example() -> dict:
    """The spec shown on the docs' Pods page (docs/concepts/pods.md), the first example."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "concepts" / "pods.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    return {"bento": {"image": "registry.example.com/llama:1"}, **yaml.safe_load(block)["spec"]}


OWNER = Owner("pods", "kubento-it", "00000000-0000-0000-0000-000000000001")

VALID_POD_SPECS = {
    "docs": docs_pods_example(),
    "full": FULL_SPEC,
    "pods": POD_SPEC,
    "archive-with-everything": {**ARCHIVE, **{k: v for k, v in POD_SPEC.items() if k != "bento"}},
    "overlay": {**VALID_SPEC, "podOverlay": OVERLAY},
    "volumes-of-every-kind": {**VALID_SPEC, "volumes": [
        {"name": "claim", "persistentVolumeClaim": {"claimName": "weights"}},
        {"name": "config", "configMap": {"name": "cfg", "items": [{"key": "a.yaml", "path": "conf/a.yaml", "mode": 0o440}]}},
        {"name": "secret", "secret": {"secretName": "s", "defaultMode": 0o400, "optional": True}},
        {"name": "csi", "csi": {"driver": "s3.csi.example.com", "readOnly": True, "volumeAttributes": {"bucket": "w"}}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "10Gi"}},
        {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}, "storageClassName": "fast"}}}},
        {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "s3",
                                                                           "expirationSeconds": 3600}},
                                                   {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}},
        {"name": "down", "downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": {"containerName": "bento", "resource": "limits.cpu", "divisor": "1m"}}]}},
        {"name": "nfs", "nfs": {"server": "10.0.0.5", "path": "/exports/models", "readOnly": True}},
        {"name": "host", "hostPath": {"path": "/mnt/models", "type": "Directory"}},
    ], "volumeMounts": [{"name": "claim", "mountPath": "/models", "subPath": "v1", "readOnly": True,
                         "recursiveReadOnly": "IfPossible"},
                        {"name": "config", "mountPath": "/etc/model"}, {"name": "proj", "mountPath": "/var/run/x"}],
       "resources": {"limits": {"cpu": "2", "memory": "1Gi", "hugepages-2Mi": "4Mi", "example.com/fpga": 2},
                     "requests": {"hugepages-2Mi": "4Mi", "example.com/fpga": "2"}}},
}


def served(spec: ModelDeploymentSpec) -> ServedBento:
    if spec.bento.image:
        return ServedBento(spec.bento.image)
    return ServedBento("registry.local/runtime:1", spec.bento.archive.uri)


@pytest.mark.parametrize("name", sorted(VALID_POD_SPECS))
def test_the_deployment_built_from_an_accepted_spec_is_valid_for_the_api_server(controlplane, namespace, name):
    raw = VALID_POD_SPECS[name]
    # the API server accepts the spec ...
    manifest = {"apiVersion": "serving.kubento.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": name, "namespace": namespace}, "spec": raw}
    controlplane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest))
    # ... and the pod kubento makes of it
    spec = ModelDeploymentSpec.model_validate(raw)
    dep = deployment(spec, OWNER, served(spec), 1)
    dep["metadata"].pop("ownerReferences")
    proc = controlplane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(dep), check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_pod_field_reaches_the_deployment(controlplane, namespace, md):
    name = md(POD_SPEC)
    dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    pod = dep["spec"]["template"]["spec"]
    server, logs = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] == 90
    assert (pod["runtimeClassName"], pod["priorityClassName"]) == ("nvidia", "models-high")
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert server["envFrom"] == POD_SPEC["envFrom"]
    assert server["startupProbe"]["failureThreshold"] == 1200
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert mounts == {"/models": "weights", "/cache": "cache", "/dev/shm": "dshm"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert volumes["weights"]["persistentVolumeClaim"]["claimName"] == "weights"
    assert logs["name"] == "logs" and logs["securityContext"]["runAsNonRoot"] is True
    obj = wait_for("a status", lambda: (o := get_json(controlplane, "md", name, "-n", namespace)).get("status") and o)
    assert condition(obj, "Ready").get("reason") not in ("ApplyFailed", "InvalidSpec"), obj["status"]


@pytest.mark.parametrize("base", ["image", "archive"])
def test_the_overlay_merges_as_kubectl_patch_does(controlplane, tmp_path, base):
    raw = {**(VALID_SPEC if base == "image" else ARCHIVE), "shmSize": "64Mi"}
    plain = ModelDeploymentSpec.model_validate(raw)
    with_overlay = ModelDeploymentSpec.model_validate({**raw, "podOverlay": OVERLAY})
    dep = deployment(plain, OWNER, served(plain), 1)
    path = tmp_path / "dep.json"
    path.write_text(json.dumps(dep))
    patch = {"spec": {"template": {"spec": prepared(dep["spec"]["template"]["spec"], with_overlay.pod_overlay.wire(),
                                                     CONTAINER_SECURITY)}}}
    out = controlplane.kubectl("patch", "--local", "-f", str(path), "--type", "strategic", "-p", json.dumps(patch),
                               "-o", "json").stdout
    theirs, ours = json.loads(out)["spec"]["template"]["spec"], pod_spec(with_overlay, served(with_overlay))
    # The one difference, on purpose: kubectl puts a list's new items first;
    # kubento appends them, so its own containers stay first (the model
    # container is the pod's default; its fetch runs before the user's init
    # containers).
    for key in ("containers", "initContainers"):
        assert [c["name"] for c in ours[key]][:len(dep["spec"]["template"]["spec"].get(key, []))] == \
            [c["name"] for c in dep["spec"]["template"]["spec"].get(key, [])]
        theirs[key] = sorted(theirs[key], key=lambda c: c["name"])
        ours[key] = sorted(ours[key], key=lambda c: c["name"])
    assert theirs == ours


def test_any_unicode_in_values_reaches_the_deployment_unchanged(controlplane, namespace, md):
    """Found by the fuzzer: characters beyond U+FFFF (the client escaped them as
    UTF-16 surrogates) and C1 controls (raw, refused by YAML) made the operator's
    server-side apply fail."""
    value = "model \U0001f916 \x85 \x9f \u2028 \u00e9 \\u1234"
    name = md({**VALID_SPEC, "podAnnotations": {"note": value}, "env": [{"name": "GREETING", "value": value}]})
    dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    assert dep["spec"]["template"]["metadata"]["annotations"]["note"] == value
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GREETING"] == value


def test_the_largest_pod_annotations_still_apply(controlplane, namespace, md):
    """64 annotations of the largest size the API allows: the pod's annotations
    fit, and the spec snapshot (for kubento rollback) is left off the
    Deployment rather than overflowing its annotations (found by reasoning
    about the fuzzer's bounds, not by the fuzzer)."""
    from kubento.builders.meta import ANNOTATION_SPEC
    from kubento.api.v1alpha1 import ANNOTATION_VALUE_MAX

    annotations = {f"example.com/k{i}": "x" * ANNOTATION_VALUE_MAX for i in range(64)}
    name = md({**VALID_SPEC, "podAnnotations": annotations})
    dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    assert dep["spec"]["template"]["metadata"]["annotations"]["example.com/k63"] == "x" * ANNOTATION_VALUE_MAX
    assert ANNOTATION_SPEC not in dep["metadata"]["annotations"]
    obj = wait_for("a status", lambda: (o := get_json(controlplane, "md", name, "-n", namespace)).get("status") and o)
    assert condition(obj, "Ready").get("reason") != "ApplyFailed", obj["status"]
