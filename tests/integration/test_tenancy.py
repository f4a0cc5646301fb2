"""The chart's tenancy guard (a ValidatingAdmissionPolicy) against the real API
server: rendered by helm with the guard on, applied, and then every guarded
field is refused in a labelled namespace, naming the field and the policy,
while the same spec is accepted in a namespace without the label."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import get_json, wait_for
from tests.specs import model_deployment

ROOT = Path(__file__).resolve().parents[2]
POLICY = "kubento-tenancy-guard"
DENIED = f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request"
GUARDED, OPEN, LATER = "tenancy-guarded", "tenancy-open", "tenancy-later"
LABEL = "kubento.io/tenancy-guard=enabled"
# Values beyond the defaults, so that each list is seen both allowing and refusing.
VALUES = ["tenancyGuard.enabled=true", "tenancyGuard.allowedRuntimeClassNames={nvidia}",
          "tenancyGuard.allowedPriorityClassNames={model-serving}", "tenancyGuard.allowedSecrets={model-creds}"]

IMAGE = {"bento": {"image": "kubento.local/iris:v1"}}
ARCHIVE = {"bento": {"archive": {"uri": "s3://models/iris.bento"}}}
SIDECAR = {"name": "tap", "image": "busybox:1"}
INIT = {"name": "prep", "image": "busybox:1"}
KEDA = {"maxReplicas": 3, "provider": "keda", "metric": "rps"}
CPU_TRIGGER = {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
SECRET_ENV = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "other", "key": "token"}}}]


def spec(base: dict[str, Any] = IMAGE, **fields: Any) -> dict[str, Any]:
    return {**base, **fields}


# (id, spec, the field the refusal must name)
REFUSED = [
    ("serviceAccountName", spec(serviceAccountName="cluster-admin-sa"), "spec.serviceAccountName: ServiceAccount cluster-admin-sa"),
    ("automountServiceAccountToken", spec(podOverlay={"automountServiceAccountToken": True}),
     "spec.podOverlay.automountServiceAccountToken"),
    ("projected token", spec(volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]),
     "spec.volumes[0].projected.sources.serviceAccountToken"),
    ("hostPath", spec(volumes=[{"name": "e", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/etc"}}]),
     "spec.volumes[1].hostPath: hostPath volumes are not allowed"),
    ("nfs", spec(volumes=[{"name": "share", "nfs": {"server": "nfs.example", "path": "/export"}}]), "spec.volumes[0].nfs"),
    ("hostPort sidecar", spec(podOverlay={"containers": [{**SIDECAR, "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
     "spec.podOverlay.containers[0].ports.hostPort"),
    ("hostPort init", spec(podOverlay={"initContainers": [{**INIT, "restartPolicy": "Always",
                                                          "ports": [{"containerPort": 81, "hostPort": 81}]}]}),
     "spec.podOverlay.initContainers[0].ports.hostPort"),
    ("privileged", spec(podOverlay={"containers": [{**SIDECAR, "securityContext": {
        "privileged": True, "allowPrivilegeEscalation": True}}]}),
     "spec.podOverlay.containers[0].securityContext.privileged"),
    ("allowPrivilegeEscalation model container", spec(podOverlay={"containers": [
        {"name": "bento", "securityContext": {"allowPrivilegeEscalation": True}}]}),
     "spec.podOverlay.containers[0].securityContext.allowPrivilegeEscalation"),
    ("allowPrivilegeEscalation init", spec(podOverlay={"initContainers": [
        INIT, {"name": "prep2", "image": "busybox:1", "securityContext": {"allowPrivilegeEscalation": True}}]}),
     "spec.podOverlay.initContainers[1].securityContext.allowPrivilegeEscalation"),
    ("capabilities", spec(podOverlay={"containers": [{**SIDECAR, "securityContext": {
        "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_PTRACE"]}}}]}),
     "spec.podOverlay.containers[0].securityContext.capabilities.add"),
    ("runtimeClassName", spec(runtimeClassName="runc-host"), "spec.runtimeClassName: RuntimeClass runc-host"),
    ("priorityClassName", spec(priorityClassName="system-cluster-critical"), "spec.priorityClassName"),
    ("schedulerName", spec(podOverlay={"schedulerName": "my-scheduler"}), "spec.podOverlay.schedulerName"),
    ("keda trigger type", spec(autoscaling={**KEDA, "kedaTriggers": [
        CPU_TRIGGER, {"type": "prometheus", "metadata": {"serverAddress": "http://169.254.169.254", "query": "up",
                                                         "threshold": "1"}}]}),
     "spec.autoscaling.kedaTriggers[1].type: trigger type prometheus"),
    ("keda ClusterTriggerAuthentication", spec(autoscaling={**KEDA, "kedaTriggers": [
        {**CPU_TRIGGER, "authenticationRef": {"name": "cloud", "kind": "ClusterTriggerAuthentication"}}]}),
     "spec.autoscaling.kedaTriggers[0].authenticationRef.kind: ClusterTriggerAuthentication"),
    ("envFrom secret", spec(envFrom=[{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "other"}}]),
     "spec.envFrom[1].secretRef.name: Secret other"),
    ("secretKeyRef", spec(env=SECRET_ENV), "spec.env[0].valueFrom.secretKeyRef.name"),
    ("secret volume", spec(volumes=[{"name": "s", "secret": {"secretName": "other"}}]), "spec.volumes[0].secret.secretName"),
    ("projected secret", spec(volumes=[{"name": "p", "projected": {"sources": [{"secret": {"name": "other"}}]}}]),
     "spec.volumes[0].projected.sources.secret.name"),
    ("csi secret", spec(volumes=[{"name": "c", "csi": {"driver": "secrets-store.csi.k8s.io",
                                                     "nodePublishSecretRef": {"name": "other"}}}]),
     "spec.volumes[0].csi.nodePublishSecretRef.name"),
    ("imagePullSecrets", spec(imagePullSecrets=[{"name": "model-creds"}, {"name": "other"}]),
     "spec.imagePullSecrets[1].name"),
    ("archive secretRef", {"bento": {"archive": {"uri": "s3://models/iris.bento", "secretRef": {"name": "other"}}}},
     "spec.bento.archive.secretRef.name"),
    ("git secretRef", {"bento": {"build": {"source": {"git": {"url": "https://git.example/iris", "secretRef": {"name": "other"}}},
                                           "output": {"uri": "s3://models/built"}}}},
     "spec.bento.build.source.git.secretRef.name"),
    ("build output secretRef", {"bento": {"build": {"source": {"configMap": {"name": "iris"}},
                                                    "output": {"uri": "s3://models/built", "secretRef": {"name": "other"}}}}},
     "spec.bento.build.output.secretRef.name"),
    ("python index secretRef", spec(ARCHIVE, python={"index": {"url": "https://pypi.internal/simple",
                                                               "secretRef": {"name": "other"}}}),
     "spec.python.index.secretRef.name"),
    ("sidecar secret env", spec(podOverlay={"containers": [{**SIDECAR, "env": SECRET_ENV}]}),
     "spec.podOverlay.containers[0].env.valueFrom.secretKeyRef.name: Secret other"),
    ("init secret envFrom", spec(podOverlay={"initContainers": [{**INIT, "envFrom": [{"secretRef": {"name": "other"}}]}]}),
     "spec.podOverlay.initContainers[0].envFrom.secretRef.name: Secret other"),
]

# Every list's allowed values, and the fixed checks' harmless settings, in one spec.
ALLOWED = spec(
    serviceAccountName="default", runtimeClassName="nvidia", priorityClassName="model-serving",
    envFrom=[{"secretRef": {"name": "model-creds"}}], imagePullSecrets=[{"name": "model-creds"}],
    volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "creds", "secret": {"secretName": "model-creds"}},
             {"name": "weights", "persistentVolumeClaim": {"claimName": "weights"}}],
    autoscaling={**KEDA, "kedaTriggers": [{**CPU_TRIGGER, "authenticationRef": {"name": "mine"}},
                                          {**CPU_TRIGGER, "authenticationRef": {"name": "mine", "kind": "TriggerAuthentication"}}]},
    podOverlay={"automountServiceAccountToken": False, "schedulerName": "default-scheduler",
                "containers": [{**SIDECAR, "ports": [{"containerPort": 9000}], "securityContext": {
                    "privileged": False, "allowPrivilegeEscalation": False,
                    "capabilities": {"add": ["NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE"]}}}]},
)


def render_guard(helm: str, *values: str) -> str:
    args = [a for v in (*VALUES, *values) for a in ("--set", v)]
    proc = subprocess.run([helm, "template", "kubento", str(ROOT / "charts" / "kubento"), "--namespace", "kubento-system",
                           "--kube-version", "1.34.4", "--show-only", "templates/tenancy-guard.yaml", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def create(cp, namespace: str, body: dict[str, Any], *flags: str, name: str | None = None):
    name = name or f"t-{uuid.uuid4().hex[:6]}"
    return cp.kubectl("create", *flags, "-f", "-", input=yaml.safe_dump(model_deployment(name, namespace, body)),
                      check=False)


def refused(cp, namespace: str, body: dict[str, Any]) -> str:
    """The API server's refusal of ``body`` (a server-side dry run), or ''."""
    proc = create(cp, namespace, body, "--dry-run=server")
    return proc.stderr if proc.returncode != 0 else ""


@pytest.fixture(scope="module")
def guard(controlplane, helm):
    """The guard applied, namespaces made; waits until the binding refuses."""
    for ns in (GUARDED, OPEN):
        controlplane.kubectl("create", "namespace", ns)
    controlplane.kubectl("label", "namespace", GUARDED, LABEL)
    manifest = render_guard(helm)
    controlplane.kubectl("apply", "-f", "-", input=manifest)
    # A new binding takes a moment to reach the admission plugin.
    wait_for("the guard to refuse a hostPath volume",
             lambda: DENIED in refused(controlplane, GUARDED, REFUSED[3][1]), timeout=60, interval=0.5)
    yield manifest
    controlplane.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest, check=False)
    for ns in (GUARDED, OPEN, LATER):
        controlplane.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


def test_the_api_server_serves_validating_admission_policies_and_the_guard_type_checks(controlplane, guard):
    resources = controlplane.kubectl("api-resources", "--api-group=admissionregistration.k8s.io", "-o", "name").stdout
    assert "validatingadmissionpolicies.admissionregistration.k8s.io" in resources.split()
    policy = get_json(controlplane.kubectl, "validatingadmissionpolicy", POLICY)
    # status.typeChecking: the API server's own check of every expression.
    checked = wait_for("the policy's type checking", lambda: (get_json(controlplane.kubectl, "validatingadmissionpolicy",
                                                                      POLICY).get("status") or {}).get("typeChecking")
                       is not None or None, timeout=30)
    assert checked
    status = get_json(controlplane.kubectl, "validatingadmissionpolicy", POLICY)["status"]
    assert not status["typeChecking"].get("expressionWarnings"), status
    assert policy["spec"]["failurePolicy"] == "Fail"


@pytest.mark.parametrize("body, field", [(c[1], c[2]) for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_each_guarded_field_is_refused_in_a_guarded_namespace_only(controlplane, guard, body, field):
    message = refused(controlplane, GUARDED, body)
    assert DENIED in message, message
    assert field in message, message
    assert "kubento tenancy guard: " in message
    # The same spec is valid: a namespace without the label takes it.
    assert refused(controlplane, OPEN, body) == ""


def test_a_plain_model_and_every_allowed_value_are_accepted_in_a_guarded_namespace(controlplane, guard):
    name = f"plain-{uuid.uuid4().hex[:4]}"
    proc = create(controlplane, GUARDED, IMAGE, name=name)
    assert proc.returncode == 0, proc.stderr
    assert get_json(controlplane.kubectl, "md", name, "-n", GUARDED)["spec"]["bento"] == IMAGE["bento"]
    assert refused(controlplane, GUARDED, ALLOWED) == ""
    assert refused(controlplane, GUARDED, ARCHIVE) == ""


def test_one_refusal_names_every_problem(controlplane, guard):
    body = spec(serviceAccountName="admin", volumes=[{"name": "h", "hostPath": {"path": "/var/run"}}],
                podOverlay={"containers": [{**SIDECAR, "ports": [{"containerPort": 80, "hostPort": 80}]}]})
    message = refused(controlplane, GUARDED, body)
    for field in ("spec.serviceAccountName", "spec.volumes[0].hostPath", "spec.podOverlay.containers[0].ports.hostPort"):
        assert field in message, message
    assert "\n" not in message.strip(), "one line (the API server drops a multi-line messageExpression)"


@pytest.mark.parametrize("field", ["hostNetwork", "hostPID", "hostIPC"])
def test_host_namespaces_cannot_be_asked_for_anywhere_in_the_spec(controlplane, guard, field):
    """The guard has no check for them because the API has no place for them:
    podOverlay is a subset of the pod spec. Strict field validation refuses
    them, and without it they are pruned (never reach a pod)."""
    body = spec(podOverlay={field: True})
    proc = create(controlplane, OPEN, body, "--dry-run=server")
    assert proc.returncode != 0 and f'unknown field "spec.podOverlay.{field}"' in proc.stderr, proc.stderr
    proc = create(controlplane, OPEN, body, "--dry-run=server", "--validate=false", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert field not in yaml.safe_load(proc.stdout)["spec"].get("podOverlay", {})


def test_a_model_admitted_before_its_namespace_was_guarded_keeps_working_until_its_spec_changes(controlplane, guard):
    host = spec(volumes=[{"name": "h", "hostPath": {"path": "/srv/models"}}])
    controlplane.kubectl("create", "namespace", LATER)
    proc = create(controlplane, LATER, host, name="old")
    assert proc.returncode == 0, proc.stderr
    controlplane.kubectl("label", "namespace", LATER, LABEL)
    wait_for("the guard to see the new label", lambda: DENIED in refused(controlplane, LATER, host), timeout=60)
    # Metadata and the scale subresource (an HPA's, kubectl scale) are not spec edits.
    controlplane.kubectl("label", "md", "old", "-n", LATER, "team=a")
    controlplane.kubectl("annotate", "md", "old", "-n", LATER, "note=kept")
    controlplane.kubectl("scale", "md", "old", "-n", LATER, "--replicas=2")
    proc = controlplane.kubectl("patch", "md", "old", "-n", LATER, "--type=merge", "-p",
                                '{"spec": {"env": [{"name": "A", "value": "b"}]}}', check=False)
    assert proc.returncode != 0 and DENIED in proc.stderr and "spec.volumes[0].hostPath" in proc.stderr, proc.stderr
    # Fixing the spec is an edit too, and is accepted.
    controlplane.kubectl("patch", "md", "old", "-n", LATER, "--type=merge", "-p",
                         '{"spec": {"volumes": [{"name": "h", "emptyDir": {}}]}}')
    controlplane.kubectl("delete", "md", "old", "-n", LATER)


def test_warn_accepts_and_reports_the_problems(controlplane, guard, helm):
    """validationActions Warn: the spec is accepted and kubectl prints the
    problems (turn it on before Deny to see what would be refused)."""
    body = REFUSED[3][1]
    controlplane.kubectl("apply", "-f", "-", input=render_guard(helm, "tenancyGuard.validationActions={Warn,Audit}"))
    try:
        proc = wait_for("the binding to warn instead of deny",
                        lambda: (p := create(controlplane, GUARDED, body, "--dry-run=server")).returncode == 0 and p,
                        timeout=60)
        assert "Warning: Validation failed for ValidatingAdmissionPolicy" in proc.stderr, proc.stderr
        assert "spec.volumes[1].hostPath" in proc.stderr, proc.stderr
    finally:
        controlplane.kubectl("apply", "-f", "-", input=guard)
        wait_for("Deny again", lambda: DENIED in refused(controlplane, GUARDED, body), timeout=60)
