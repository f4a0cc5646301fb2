"""The model server's Deployment and pod template."""

from __future__ import annotations

import copy
import json
from typing import Any

from kubento.api.k8s import MODEL_CONTAINER, MODEL_PORT_NAME, SHM_PATH, SHM_VOLUME
from kubento.api.v1alpha1 import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_STARTUP_SECONDS,
    PRESTOP_SECONDS,
    ModelDeploymentSpec,
)
from kubento.builders.bento import (
    BENTOML_HOME,
    BENTOML_HOME_VOLUME,
    RUNTIME,
    ServedBento,
    archive_volumes,
    fetch_container,
    server_env,
    server_mounts,
)
from kubento.builders.meta import (
    ANNOTATION_BENTO,
    ANNOTATION_SPEC,
    LABEL_MODEL,
    LABEL_REVISION,
    Owner,
    common_labels,
    digest,
    object_meta,
    selector_labels,
    with_applied_hash,
)
from kubento.builders import defaults
from kubento.builders.overlay import apply_overlay
from kubento.builders.validate import validated
from kubento.predictions.gate import ANNOTATION_CHECKS, GATE, checks_annotation
from kubento.quality.profile import ANNOTATION_MONITORING, PAYLOADS_MOUNT, PAYLOADS_VOLUME
from kubento.runtime.monitor import CONFIG_ENV as MONITORING_ENV
from kubento.runtime.tasks import LINGER_ENV as TASK_LINGER_ENV

CONTAINER_NAME = MODEL_CONTAINER
PORT_NAME = MODEL_PORT_NAME
# BentoML's containerized images run as the "bentoml" user with this uid; a
# numeric uid lets the kubelet enforce runAsNonRoot.
BENTO_UID = 1034
# PRESTOP_SECONDS: let endpoint removal reach kube-proxy before the server stops.
TERMINATION_GRACE_SECONDS = DEFAULT_GRACE_SECONDS
# BentoML's /readyz hangs (rather than failing) while the service loads, so
# every probe carries a timeout; the startup probe allows 10 minutes to load.
# It polls every second: a pod is Ready within ~1 s of the server answering
# (a 5 s period cost up to 4 s of every apply-to-Ready and every rollout step).
STARTUP_PERIOD, STARTUP_FAILURES = 1, DEFAULT_STARTUP_SECONDS
# With spec.startupTimeoutSeconds, a hanging /readyz fails each attempt after
# 1 s, so the budget is that many seconds whether the server refuses or hangs.
# (The default probe above keeps its 3 s timeout: changing it would change
# every existing revision; a hanging server gets up to 3x its 600 s there.)
STARTUP_TIMEOUT_PROBE_TIMEOUT = 1


def _probe(path: str, period: int, failures: int, timeout: int = 3) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _startup_probe(spec: ModelDeploymentSpec) -> dict[str, Any]:
    if spec.startup_timeout_seconds is None:
        return _probe("/readyz", STARTUP_PERIOD, STARTUP_FAILURES)
    return _probe("/readyz", STARTUP_PERIOD, spec.startup_timeout_seconds, STARTUP_TIMEOUT_PROBE_TIMEOUT)


def _env(spec: ModelDeploymentSpec, bento: ServedBento) -> list[dict[str, Any]]:
    # The API forbids BENTOML_PORT in spec.env: probes and the Service target spec.port.
    ours = [{"name": "BENTOML_PORT", "value": str(spec.port)}]
    if bento.archive_uri:
        ours.append({"name": "BENTOML_HOME", "value": BENTOML_HOME})
    ours += server_env(bento)
    grace = told_grace(spec, bento)
    if bento.archive_uri and grace is not None:
        # kubento's server (kubento.runtime.tasks) waits this long at stop for its tasks; unset, its
        # default (25 s) fits the default grace.
        ours.append({"name": TASK_LINGER_ENV, "value": str(task_linger_seconds(grace))})
    if bento.monitoring:
        ours += monitoring_env(bento.monitoring)
    return ours + [e.model_dump(by_alias=True, exclude_none=True, mode="json") for e in spec.env]


TASK_LINGER_MARGIN = 5  # for the drain of keep-alive connections and BentoML's own shutdown


def told_grace(spec: ModelDeploymentSpec, bento: ServedBento) -> int | None:
    """The pods' grace period when the spec or the bento's services (their traffic.timeout) say one."""
    if spec.termination_grace_period_seconds is not None:
        return spec.termination_grace_period_seconds
    return defaults.grace_seconds(bento.services, TERMINATION_GRACE_SECONDS, PRESTOP_SECONDS)


def task_linger_seconds(grace: int) -> int:
    """How long a stopping pod waits for its tasks: its grace, less the preStop pause and a margin."""
    return max(0, grace - PRESTOP_SECONDS - TASK_LINGER_MARGIN)


def monitoring_env(told: str) -> list[dict[str, Any]]:
    """What kubento.runtime.monitor reads: its configuration, and where it runs (the downward API)."""
    def field(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}
    return [{"name": MONITORING_ENV, "value": told},
            {"name": "KUBENTO_NAMESPACE", **field("metadata.namespace")},
            {"name": "KUBENTO_POD", **field("metadata.name")},
            {"name": "KUBENTO_REVISION", **field(f"metadata.labels['{LABEL_REVISION}']")}]


def payload_claim(spec: ModelDeploymentSpec) -> str | None:
    """The PersistentVolumeClaim payload records are written to, if any."""
    payloads = spec.monitoring.payloads if spec.monitoring else None
    return payloads.files.claim_name if payloads and payloads.files else None


def _resources(spec: ModelDeploymentSpec, bento: ServedBento | None = None) -> dict[str, Any]:
    """spec.resources; unset, what the bento's services declare (the server container only)."""
    if spec.resources is None:
        return defaults.resources(bento.services, bento.gpus.resource) if bento is not None else {}
    out = {}
    for key in ("requests", "limits"):
        values = getattr(spec.resources, key)
        if values:
            out[key] = {name: str(q) for name, q in values.items()}
    return out


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}

POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": BENTO_UID,
    "runAsGroup": BENTO_UID,
    "fsGroup": BENTO_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _wire(items: list[Any] | None) -> list[dict[str, Any]]:
    return [i.model_dump(by_alias=True, exclude_none=True, mode="json") for i in items or []]


def container(spec: ModelDeploymentSpec, bento: ServedBento) -> dict[str, Any]:
    out = {
        "name": CONTAINER_NAME,
        "image": bento.image,
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "env": _env(spec, bento),
        "resources": _resources(spec, bento),
        "startupProbe": _startup_probe(spec),
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": _probe("/livez", 10, 3),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }
    mounts = []
    if bento.archive_uri:
        # The init container imported the bento into BENTOML_HOME.
        out["command"] = RUNTIME + ["serve"]
        mounts.append({"name": BENTOML_HOME_VOLUME, "mountPath": BENTOML_HOME})
        mounts += server_mounts(bento)
    if spec.shm_size is not None:
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    if bento.monitoring and payload_claim(spec):
        mounts.append({"name": PAYLOADS_VOLUME, "mountPath": PAYLOADS_MOUNT})
    mounts += _wire(spec.volume_mounts)
    if mounts:
        out["volumeMounts"] = mounts
    if spec.env_from:
        out["envFrom"] = _wire(spec.env_from)
    return out


def _spread(constraint: dict[str, Any]) -> dict[str, Any]:
    """A topology spread constraint; without a labelSelector it counts this
    model's pods: every kubento pod, matched on this pod's instance label
    (the model's name) by matchLabelKeys."""
    if "labelSelector" in constraint:
        return constraint
    keys = constraint.get("matchLabelKeys") or []
    return {
        **constraint,
        "labelSelector": {"matchExpressions": [{"key": LABEL_MODEL, "operator": "Exists"}]},
        "matchLabelKeys": keys + [k for k in ["app.kubernetes.io/instance"] if k not in keys],
    }


def pod_spec(spec: ModelDeploymentSpec, bento: ServedBento) -> dict[str, Any]:
    """The model's pod. A field the spec leaves unset adds nothing, so
    existing revisions keep their hash when fields are added."""
    pod: dict[str, Any] = {
        "containers": [container(spec, bento)],
        "terminationGracePeriodSeconds": told_grace(spec, bento) or TERMINATION_GRACE_SECONDS,
        "securityContext": copy.deepcopy(POD_SECURITY),
    }
    if spec.prediction_checks is not None:
        # Ready only once kubento has checked its answers (kubento.predictions.gate).
        pod["readinessGates"] = [{"conditionType": GATE}]
    volumes = []
    if bento.archive_uri:
        pod["initContainers"] = [fetch_container(bento, copy.deepcopy(CONTAINER_SECURITY), _resources(spec))]
        volumes += archive_volumes(bento)
    if spec.shm_size is not None:
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": str(spec.shm_size)}})
    claim = payload_claim(spec)
    if bento.monitoring and claim:
        volumes.append({"name": PAYLOADS_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    volumes += _wire(spec.volumes)
    if volumes:
        pod["volumes"] = volumes
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s.name} for s in spec.image_pull_secrets]
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    elif spec.affinity is None and defaults.node_selector(bento.services, bento.gpus):
        pod["nodeSelector"] = defaults.node_selector(bento.services, bento.gpus)  # the GPU type the bento asks for
    if spec.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in spec.tolerations]
    if spec.affinity is not None:
        pod["affinity"] = spec.affinity.model_dump(by_alias=True, exclude_none=True, mode="json")
    if spec.topology_spread_constraints:
        pod["topologySpreadConstraints"] = [_spread(c) for c in _wire(spec.topology_spread_constraints)]
    if spec.runtime_class_name:
        pod["runtimeClassName"] = spec.runtime_class_name
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    if spec.pod_overlay is not None:
        pod = apply_overlay(pod, spec.pod_overlay.wire(), CONTAINER_SECURITY)
    return pod


def revision(spec: ModelDeploymentSpec, bento: ServedBento) -> str:
    """Hash of everything that shapes the model's pods (and the checks that
    admit them to traffic, when there are any: a model without checks keeps
    the hash it always had)."""
    shaped: dict[str, Any] = {
        "pod": pod_spec(spec, bento),
        "labels": spec.pod_labels,
        "annotations": spec.pod_annotations,
    }
    if spec.prediction_checks is not None:
        shaped["predictionChecks"] = spec.prediction_checks.wire()
    return digest(shaped)


# Metrics kubento's own autoscaler scales on (cpu and memory: an HPA).
OWN_METRICS = ("concurrency", "rps")


def model_replicas(spec: ModelDeploymentSpec) -> int:
    """How many pods the model should have in all. With autoscaling, an HPA
    (or KEDA) sizes the ModelDeployment itself through its scale subresource
    (spec.replicas), kept within [minReplicas, maxReplicas]; kubento's own
    autoscaler keeps its decision in status.autoscaling.desiredReplicas (the
    reconcile pass uses it), so until it has decided: minReplicas."""
    scaling = spec.autoscaling
    if scaling is None:
        return spec.replicas
    if scaling.metric not in OWN_METRICS or scaling.provider == "keda":  # an HPA (or KEDA's) writes spec.replicas
        return min(max(spec.replicas, scaling.min_replicas), scaling.max_replicas)
    return scaling.min_replicas  # until kubento's own autoscaler has decided (status.autoscaling)


def deployment_name(owner: Owner, rev: str) -> str:
    """One Deployment per revision (model names are at most 52 characters)."""
    return f"{owner.name}-{rev}"


# An object's annotations may hold 256 KiB in all. A spec whose pod part is
# larger than this (big annotations, env values, overlays) is not kept on its
# Deployment: the revision runs, but `kubento rollback` to it says it cannot.
SPEC_ANNOTATION_MAX = 200 * 1024


def spec_snapshot(spec: ModelDeploymentSpec, bento: ServedBento) -> dict[str, Any]:
    """The pod-shaping part of the spec that made a revision, kept on its
    Deployment so `kubento rollback` can put it back. A build is recorded as
    the archive it produced: rolling back never rebuilds."""
    out = spec.model_dump(by_alias=True, exclude_none=True, mode="json",
                          exclude={"replicas", "autoscaling", "rollout"})
    if bento.archive_uri:
        out["runtimeImage"] = bento.image  # the one it ran with, even if it was the operator's default
    if spec.bento.build is not None and bento.archive_uri:
        archive: dict[str, Any] = {"uri": bento.archive_uri}
        if bento.sha256:
            archive["sha256"] = bento.sha256
        if bento.secret:
            archive["secretRef"] = {"name": bento.secret}
        out["bento"] = {"archive": archive}
    elif bento.oci and "archive" in out.get("bento", {}):
        out["bento"]["archive"]["uri"] = bento.archive_uri  # the digest it ran, not a tag that may have moved
    return out


def deployment(spec: ModelDeploymentSpec, owner: Owner, bento: ServedBento, replicas: int,
               name: str | None = None) -> dict[str, Any]:
    """The Deployment of the revision ``spec`` and ``bento`` make, at ``replicas``.
    Its selector includes the revision, so revisions never share pods."""
    rev = revision(spec, bento)
    pod_labels = {**spec.pod_labels, **common_labels(owner), LABEL_REVISION: rev}
    pod_annotations = {
        **spec.pod_annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.port),
        "prometheus.io/path": "/metrics",
    }
    dep_spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {**selector_labels(owner), LABEL_REVISION: rev}},
        # A revision's template never changes (a change is a new revision);
        # this only matters when someone else edits it and kubento reverts.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "revisionHistoryLimit": 1,
        "template": {
            "metadata": {"labels": pod_labels, "annotations": pod_annotations},
            "spec": pod_spec(spec, bento),
        },
    }
    meta = object_meta(owner, name or deployment_name(owner, rev), {LABEL_REVISION: rev})
    snapshot = json.dumps(spec_snapshot(spec, bento), sort_keys=True, separators=(",", ":"))
    meta["annotations"] = {ANNOTATION_BENTO: bento.describe()}
    if len(snapshot.encode()) <= SPEC_ANNOTATION_MAX:
        meta["annotations"][ANNOTATION_SPEC] = snapshot
    if spec.prediction_checks is not None:
        meta["annotations"][ANNOTATION_CHECKS] = checks_annotation(spec.prediction_checks, spec.port)
    if bento.judged:
        meta["annotations"][ANNOTATION_MONITORING] = bento.judged
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": dep_spec}
    return validated(with_applied_hash(manifest))
