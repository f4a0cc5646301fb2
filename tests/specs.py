"""ModelDeployment specs shared by the unit and integration tiers.

INVALID is one table: unit tests feed each spec to the pydantic models, the
integration tier sends each to a real API server with ``kubectl apply`` and
checks the error names the field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

VALID_SPEC: dict[str, Any] = {"bento": {"image": "registry.local/iris:1.0"}}

FULL_SPEC: dict[str, Any] = {
    "bento": {"image": "registry.local/iris:1.0"},
    "replicas": 2,
    "port": 3000,
    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi", "nvidia.com/gpu": 1}},
    "env": [{"name": "MODEL_THRESHOLD", "value": "0.5"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
            ]
        }
    },
    "serviceAccountName": "model-runner",
    "podLabels": {"team": "ml"},
    "podAnnotations": {"owner": "ml-platform"},
    "autoscaling": {"minReplicas": 1, "maxReplicas": 5, "metric": "cpu", "target": 70},
    "rollout": {"strategy": "RollingUpdate", "progressDeadlineSeconds": 300, "revisionHistoryLimit": 5},
}


# Every pod field of issue #18 at once.
POD_SPEC: dict[str, Any] = {
    "bento": {"image": "registry.local/iris:1.0"},
    "startupTimeoutSeconds": 1200,
    "terminationGracePeriodSeconds": 90,
    "runtimeClassName": "nvidia",
    "priorityClassName": "models-high",
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
    "envFrom": [{"configMapRef": {"name": "model-config"}}, {"secretRef": {"name": "model-keys"}}],
    "volumes": [{"name": "weights", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}],
    "volumeMounts": [{"name": "weights", "mountPath": "/models", "readOnly": True},
                     {"name": "cache", "mountPath": "/cache"}],
    "shmSize": "1Gi",
    "podOverlay": {"containers": [{"name": "logs", "image": "fluent-bit:3",
                                   "volumeMounts": [{"name": "cache", "mountPath": "/cache", "readOnly": True}]}]},
    "rollout": {"progressDeadlineSeconds": 1200},
}


def model_deployment(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A whole ModelDeployment object, as a user would apply it."""
    return {
        "apiVersion": "serving.kubento.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    spec.update(changes)
    return spec


@dataclass(frozen=True)
class Invalid:
    id: str
    spec: dict[str, Any]
    field: str  # what the API server's message must name
    pydantic: bool = True  # the spec models see it too (metadata rules they cannot)
    admission: bool = True  # the API server refuses it (CEL cannot see fields of any JSON, e.g. equals: the
    #                         operator refuses those with InvalidSpec, naming the field)
    name: str = "bad"
    message: str = ""  # and, where the field alone is ambiguous, what it must say


GOLDEN = {"name": "setosa", "path": "/classify", "body": {"features": [[5.1, 3.5, 1.4, 0.2]]},
          "expect": [{"jsonPath": "$[0]", "equals": "setosa"}]}


def checks(**changes: Any) -> dict[str, Any]:
    """VALID_SPEC with one prediction check, changed by ``changes``."""
    return with_(VALID_SPEC, predictionChecks={"checks": [{**GOLDEN, **changes}]})


ARCHIVE_SPEC: dict[str, Any] = {"bento": {"archive": {"uri": "s3://models/iris.bento"}}}
CANARY = {"strategy": "Canary", "steps": [{"weight": 50}]}


def monitored(monitoring: dict[str, Any]) -> dict[str, Any]:
    """An archive's spec with ``monitoring``."""
    return with_(ARCHIVE_SPEC, monitoring=monitoring)


def stats(**changes: Any) -> dict[str, Any]:
    """monitoring with statistics of /classify (one feature), changed by ``changes``."""
    return {"statistics": {"endpoint": "/classify", "inputs": [{"name": "a", "path": "$[0]"}], **changes}}


COMPARE = {"inputs": {"configMapKeyRef": {"name": "iris-rows", "key": "rows.jsonl"}}, "path": "/classify",
           "minAgreement": 0.95}

GATEWAY = {"gateway": {"parentRefs": [{"name": "gw", "namespace": "infra"}]}}

INVALID = [
    Invalid("two-sources", {"bento": {"image": "a:1", "archive": {"uri": "s3://b/k.bento"}}}, "spec.bento", message="exactly one of image, archive or build"),
    Invalid("no-source", {"bento": {}}, "spec.bento", message="exactly one of image, archive or build"),
    Invalid("no-bento", {"replicas": 1}, "spec.bento", message="Required value"),
    Invalid("empty-image", {"bento": {"image": ""}}, "spec.bento.image"),
    Invalid("bad-uri-scheme", {"bento": {"archive": {"uri": "ftp://host/x.bento"}}}, "spec.bento.archive.uri"),
    Invalid(
        "two-build-sources",
        {"bento": {"build": {"source": {"configMap": {"name": "p"}, "git": {"url": "https://git.local/p.git"}},
                             "output": {"uri": "s3://b/built"}}}},
        "spec.bento.build.source",
        message="exactly one of configMap, pvc or git",
    ),
    Invalid(
        "pvc-project-path-with-dot-dot",
        {"bento": {"build": {"source": {"pvc": {"claimName": "c", "path": "projects/../../etc"}},
                             "output": {"uri": "s3://b"}}}},
        "spec.bento.build.source.pvc.path",
    ),
    Invalid("build-without-output", {"bento": {"build": {"source": {"configMap": {"name": "p"}}}}}, "spec.bento.build.output"),
    Invalid(
        "build-output-http",
        {"bento": {"build": {"source": {"configMap": {"name": "p"}}, "output": {"uri": "https://host/built"}}}},
        "spec.bento.build.output.uri",
    ),
    Invalid(
        "git-over-ssh",
        {"bento": {"build": {"source": {"git": {"url": "git@github.com:org/repo.git"}}, "output": {"uri": "s3://b"}}}},
        "spec.bento.build.source.git.url",
    ),
    Invalid(
        "git-credentials-in-url",
        {"bento": {"build": {"source": {"git": {"url": "https://user:token@git.local/r.git"}}, "output": {"uri": "s3://b"}}}},
        "spec.bento.build.source.git.url",
    ),
    Invalid("bad-sha256", {"bento": {"archive": {"uri": "s3://b/k.bento", "sha256": "abc"}}}, "spec.bento.archive.sha256"),
    Invalid("negative-replicas", with_(VALID_SPEC, replicas=-1), "spec.replicas"),
    Invalid("port-out-of-range", with_(VALID_SPEC, port=70000), "spec.port"),
    Invalid("unknown-field", with_(VALID_SPEC, replica=2), "spec.replica", message="unknown field"),
    Invalid(
        "min-above-max",
        with_(VALID_SPEC, resources={"requests": {"cpu": "1"}}, autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
    ),
    Invalid(
        "unknown-metric",
        with_(VALID_SPEC, autoscaling={"maxReplicas": 2, "metric": "gpu"}),
        "spec.autoscaling.metric",
    ),
    Invalid(
        "cpu-scaling-without-request",
        with_(VALID_SPEC, autoscaling={"maxReplicas": 3, "metric": "cpu"}),
        "spec.autoscaling",
        message="needs resources.requests",
    ),
    Invalid(
        "keda-on-concurrency-without-triggers",
        with_(VALID_SPEC, autoscaling={"maxReplicas": 3, "metric": "concurrency", "provider": "keda"}),
        "spec.autoscaling.provider",
        message="KEDA has no scaler",
    ),
    Invalid(
        "keda-triggers-without-keda",
        with_(VALID_SPEC, autoscaling={"maxReplicas": 3, "metric": "concurrency",
                                       "kedaTriggers": [{"type": "cron", "metadata": {}}]}),
        "spec.autoscaling.kedaTriggers",
        message="need provider keda",
    ),
    Invalid(
        "autoscaling-window-too-short",
        with_(VALID_SPEC, autoscaling={"maxReplicas": 3, "metric": "rps", "window": "2s"}),
        "spec.autoscaling.window",
        message="at least 6s",
    ),
    Invalid("bad-quantity", with_(VALID_SPEC, resources={"limits": {"memory": "lots"}}), "spec.resources.limits.memory"),
    Invalid(
        "weight-over-100",
        with_(VALID_SPEC, rollout={"strategy": "Canary", "steps": [{"weight": 150}]}),
        "spec.rollout.steps[0].weight",
    ),
    Invalid(
        "steps-not-ascending",
        with_(VALID_SPEC, rollout={"strategy": "Canary", "steps": [{"weight": 50}, {"weight": 20}]}),
        "spec.rollout.steps",
        message="strictly ascending",
    ),
    Invalid(
        "steps-without-canary",
        with_(VALID_SPEC, rollout={"strategy": "RollingUpdate", "steps": [{"weight": 50}]}),
        "spec.rollout.steps",
        message="only allowed with strategy Canary",
    ),
    Invalid(
        "bad-pause",
        with_(VALID_SPEC, rollout={"strategy": "Canary", "steps": [{"weight": 50, "pause": "soon"}]}),
        "spec.rollout.steps[0].pause",
    ),
    Invalid(
        "error-rate-above-1",
        with_(VALID_SPEC, rollout={"strategy": "Canary", "steps": [{"weight": 50}], "analysis": {"maxErrorRate": 2}}),
        "spec.rollout.analysis.maxErrorRate",
    ),
    Invalid(
        "analysis-with-rolling-update",
        with_(VALID_SPEC, rollout={"analysis": {"maxErrorRate": 0.1}}),
        "spec.rollout.analysis",
        message="needs strategy Canary or BlueGreen",
    ),
    Invalid("unknown-strategy", with_(VALID_SPEC, rollout={"strategy": "Shadow"}), "spec.rollout.strategy"),
    Invalid(
        "runtime-image-with-image", with_(VALID_SPEC, runtimeImage="runtime:1"), "spec.runtimeImage"
    ),
    Invalid("env-without-name", with_(VALID_SPEC, env=[{"value": "x"}]), "spec.env[0].name"),
    Invalid(
        "duplicate-env",
        with_(VALID_SPEC, env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
        message="Duplicate value",
    ),
    Invalid(
        "bentoml-port-in-env",
        with_(VALID_SPEC, env=[{"name": "BENTOML_PORT", "value": "4000"}]),
        "spec.env",
        message="set port instead",
    ),
    Invalid("pull-secret-without-name", with_(VALID_SPEC, imagePullSecrets=[{}]), "spec.imagePullSecrets[0].name"),
    Invalid("negative-quantity", with_(VALID_SPEC, resources={"requests": {"cpu": "-1"}}), "spec.resources.requests.cpu"),
    # The quantity pattern only applies to strings; an integer needs its own minimum (found by the fuzzer).
    Invalid("negative-integer-quantity", with_(VALID_SPEC, resources={"limits": {"cpu": -5}}), "spec.resources.limits.cpu"),
    Invalid("name-too-long", VALID_SPEC, "metadata.name", pydantic=False, name="m" * 53),
    # --- pod fields (issue #18)
    Invalid(
        "startup-longer-than-deadline",
        with_(VALID_SPEC, startupTimeoutSeconds=1800),
        "spec.startupTimeoutSeconds",
        message="progressDeadlineSeconds (default 600) must be at least startupTimeoutSeconds",
    ),
    Invalid(
        "startup-longer-than-set-deadline",
        with_(VALID_SPEC, startupTimeoutSeconds=400, rollout={"progressDeadlineSeconds": 300}),
        "spec.startupTimeoutSeconds",
        message="must be at least startupTimeoutSeconds",
    ),
    Invalid("grace-shorter-than-prestop", with_(VALID_SPEC, terminationGracePeriodSeconds=3),
            "spec.terminationGracePeriodSeconds"),
    Invalid("bad-runtime-class", with_(VALID_SPEC, runtimeClassName="NVIDIA!"), "spec.runtimeClassName"),
    Invalid("bad-priority-class", with_(VALID_SPEC, priorityClassName="High Priority"), "spec.priorityClassName"),
    Invalid("zero-shm", with_(VALID_SPEC, shmSize=0), "spec.shmSize", message="greater than 0"),
    Invalid("bad-shm", with_(VALID_SPEC, shmSize="lots"), "spec.shmSize"),
    Invalid(
        "volume-without-source",
        with_(VALID_SPEC, volumes=[{"name": "weights"}]),
        "spec.volumes[0]",
        message="exactly one of persistentVolumeClaim",
    ),
    Invalid(
        "volume-with-two-sources",
        with_(VALID_SPEC, volumes=[{"name": "w", "emptyDir": {}, "persistentVolumeClaim": {"claimName": "c"}}]),
        "spec.volumes[0]",
        message="exactly one of persistentVolumeClaim",
    ),
    Invalid("volume-bad-name", with_(VALID_SPEC, volumes=[{"name": "Weights", "emptyDir": {}}]),
            "spec.volumes[0].name"),
    Invalid(
        "volume-name-is-kubentos",
        with_(VALID_SPEC, volumes=[{"name": "bentoml-home", "emptyDir": {}}]),
        "spec.volumes",
        message="are kubento's",
    ),
    Invalid(
        "deprecated-volume-plugin",
        with_(VALID_SPEC, volumes=[{"name": "w", "gcePersistentDisk": {"pdName": "d"}}]),
        "spec.volumes[0].gcePersistentDisk",
        message="unknown field",
    ),
    Invalid("memory-medium-typo", with_(VALID_SPEC, volumes=[{"name": "w", "emptyDir": {"medium": "RAM"}}]),
            "spec.volumes[0].emptyDir.medium"),
    Invalid(
        "mount-of-missing-volume",
        with_(VALID_SPEC, volumeMounts=[{"name": "weights", "mountPath": "/models"}]),
        "spec.volumeMounts",
        message="must be one of spec.volumes",
    ),
    Invalid(
        "relative-mount-path",
        with_(VALID_SPEC, volumes=[{"name": "w", "emptyDir": {}}], volumeMounts=[{"name": "w", "mountPath": "models"}]),
        "spec.volumeMounts[0].mountPath",
    ),
    Invalid(
        "mount-over-shm",
        with_(VALID_SPEC, shmSize="1Gi", volumes=[{"name": "w", "emptyDir": {}}],
              volumeMounts=[{"name": "w", "mountPath": "/dev/shm"}]),
        "spec.volumeMounts",
        message="kubento's",
    ),
    Invalid(
        "subpath-escapes",
        with_(VALID_SPEC, volumes=[{"name": "w", "emptyDir": {}}],
              volumeMounts=[{"name": "w", "mountPath": "/m", "subPath": "../etc"}]),
        "spec.volumeMounts[0].subPath",
    ),
    Invalid(
        "bidirectional-mount",
        with_(VALID_SPEC, volumes=[{"name": "w", "emptyDir": {}}],
              volumeMounts=[{"name": "w", "mountPath": "/m", "mountPropagation": "Bidirectional"}]),
        "spec.volumeMounts[0].mountPropagation",
    ),
    Invalid("env-from-both", with_(VALID_SPEC, envFrom=[{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]),
            "spec.envFrom[0]", message="exactly one of configMapRef, secretRef"),
    Invalid("env-from-bad-prefix", with_(VALID_SPEC, envFrom=[{"prefix": "A=", "configMapRef": {"name": "a"}}]),
            "spec.envFrom[0].prefix"),
    Invalid(
        "spread-bad-when",
        with_(VALID_SPEC, topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"}]),
        "spec.topologySpreadConstraints[0].whenUnsatisfiable",
    ),
    Invalid(
        "spread-zero-skew",
        with_(VALID_SPEC, topologySpreadConstraints=[{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
        "spec.topologySpreadConstraints[0].maxSkew",
    ),
    Invalid(
        "overlay-model-port",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "bento", "ports": [{"containerPort": 9000}]}]}),
        "spec.podOverlay.containers[0].ports",
        message="the model container's ports is kubento's: set spec.port",
    ),
    Invalid(
        "overlay-model-probe",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "bento", "startupProbe": {"exec": {"command": ["true"]}}}]}),
        "spec.podOverlay.containers[0].startupProbe",
        message="set spec.startupTimeoutSeconds",
    ),
    Invalid(
        "overlay-model-image",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "bento", "image": "other:1"}]}),
        "spec.podOverlay.containers[0].image",
        message="the model container's image is kubento's",
    ),
    Invalid(
        "overlay-fetch-container",
        with_(VALID_SPEC, podOverlay={"initContainers": [{"name": "fetch-bento", "image": "x:1"}]}),
        "spec.podOverlay.initContainers[0].name",
        message="kubento's container names",
    ),
    Invalid(
        "overlay-first-class-field",
        with_(VALID_SPEC, podOverlay={"tolerations": [{"operator": "Exists"}]}),
        "spec.podOverlay.tolerations",
        message="unknown field",
    ),
    Invalid(
        "overlay-sidecar-without-image",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "logs"}]}),
        "spec.podOverlay.containers[0].image",
        message="needs an image",
    ),
    Invalid(
        "overlay-sidecar-on-model-port",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "proxy", "image": "p:1", "ports": [{"containerPort": 3000}]}]}),
        "spec.podOverlay",
        message="must not listen on the model's port",
    ),
    Invalid(
        "overlay-mount-of-missing-volume",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "logs", "image": "l:1",
                                                      "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}),
        "spec.podOverlay",
        message="must name one of spec.volumes",
    ),
    Invalid(
        "overlay-init-probe-without-sidecar",
        with_(VALID_SPEC, podOverlay={"initContainers": [{"name": "warm", "image": "w:1",
                                                          "readinessProbe": {"exec": {"command": ["true"]}}}]}),
        "spec.podOverlay.initContainers[0].readinessProbe",
        message="restartPolicy Always",
    ),
    Invalid(
        "overlay-privileged-without-escalation",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "x", "image": "x:1", "securityContext": {"privileged": True}}]}),
        "spec.podOverlay.containers[0].securityContext.allowPrivilegeEscalation",
        message="privileged needs allowPrivilegeEscalation",
    ),
    Invalid(
        "overlay-sleep-longer-than-grace",
        with_(VALID_SPEC, podOverlay={"containers": [{"name": "x", "image": "x:1",
                                                      "lifecycle": {"preStop": {"sleep": {"seconds": 60}}}}]}),
        "spec.podOverlay",
        message="must not be longer than terminationGracePeriodSeconds",
    ),
    Invalid(
        "overlay-dns-none-without-nameservers",
        with_(VALID_SPEC, podOverlay={"dnsPolicy": "None"}),
        "spec.podOverlay.dnsConfig",
        message="dnsPolicy None needs dnsConfig.nameservers",
    ),
    # --- bad input the API server used to accept (issue #12)
    Invalid("bad-pod-label-key", with_(VALID_SPEC, podLabels={"bad key!": "v"}), "spec.podLabels",
            message="label key bad key! is invalid"),
    Invalid("bad-pod-label-value", with_(VALID_SPEC, podLabels={"team": "machine learning"}), "spec.podLabels.team"),
    Invalid("kubento-pod-label", with_(VALID_SPEC, podLabels={"serving.kubento.io/revision": "x"}), "spec.podLabels",
            message="are kubento's"),
    Invalid("bad-annotation-key", with_(VALID_SPEC, podAnnotations={"not/a/key": "v"}), "spec.podAnnotations",
            message="annotation key not/a/key"),
    Invalid("bad-node-selector-key", with_(VALID_SPEC, nodeSelector={"-zone": "a"}), "spec.nodeSelector",
            message="label key -zone is invalid"),
    Invalid("bad-node-selector-value", with_(VALID_SPEC, nodeSelector={"zone": "a b"}), "spec.nodeSelector.zone"),
    Invalid("toleration-operator-sometimes", with_(VALID_SPEC, tolerations=[{"key": "k", "operator": "Sometimes"}]),
            "spec.tolerations[0].operator"),
    Invalid("toleration-bad-effect", with_(VALID_SPEC, tolerations=[{"key": "k", "operator": "Exists", "effect": "Never"}]),
            "spec.tolerations[0].effect"),
    Invalid(
        "toleration-seconds-without-noexecute",
        with_(VALID_SPEC, tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}]),
        "spec.tolerations[0].tolerationSeconds",
        message="only allowed with effect NoExecute",
    ),
    Invalid("toleration-exists-with-value", with_(VALID_SPEC, tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
            "spec.tolerations[0].value", message="value must be empty when operator is Exists"),
    Invalid("toleration-no-key-equal", with_(VALID_SPEC, tolerations=[{"operator": "Equal", "value": "v"}]),
            "spec.tolerations[0].operator", message="operator must be Exists when key is empty"),
    Invalid(
        "gpu-requests-above-limits",
        with_(VALID_SPEC, resources={"requests": {"nvidia.com/gpu": 2}, "limits": {"nvidia.com/gpu": 1}}),
        "spec.resources.requests",
        message="must equal their limits",
    ),
    Invalid("gpu-requests-without-limits", with_(VALID_SPEC, resources={"requests": {"nvidia.com/gpu": 1}}),
            "spec.resources.requests", message="must equal their limits"),
    Invalid("fractional-gpu", with_(VALID_SPEC, resources={"limits": {"nvidia.com/gpu": "0.5"}}), "spec.resources",
            message="whole numbers"),
    Invalid("cpu-requests-above-limits", with_(VALID_SPEC, resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            "spec.resources.requests", message="less than or equal to"),
    Invalid("unknown-resource-name", with_(VALID_SPEC, resources={"limits": {"gpu": 1}}), "spec.resources",
            message="resource names are cpu, memory"),
    Invalid("quantity-with-fractional-exponent", with_(VALID_SPEC, resources={"limits": {"memory": "1e3.5"}}),
            "spec.resources.limits.memory"),
    Invalid(
        "affinity-in-without-values",
        with_(VALID_SPEC, affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}}),
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
        message="values must be given when operator is In",
    ),
    Invalid(
        "affinity-no-terms",
        with_(VALID_SPEC, affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}),
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
    ),
    Invalid(
        "pod-affinity-weight-over-100",
        with_(VALID_SPEC, affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 200, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}),
        "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
    ),
    Invalid("env-name-with-equals", with_(VALID_SPEC, env=[{"name": "A=B", "value": "1"}]), "spec.env[0].name"),
    Invalid(
        "env-value-and-value-from",
        with_(VALID_SPEC, env=[{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        "spec.env[0].valueFrom",
        message="value and valueFrom are exclusive",
    ),
    Invalid("env-bad-field-path", with_(VALID_SPEC, env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]),
            "spec.env[0].valueFrom.fieldRef.fieldPath"),
    # --- classes of holes the fuzz test found (tests/integration/test_fuzz.py)
    Invalid("field-ref-api-version", with_(VALID_SPEC, env=[{"name": "A", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.name", "apiVersion": "v2"}}}]), "spec.env[0].valueFrom.fieldRef.apiVersion"),
    Invalid("init-restart-never", with_(VALID_SPEC, podOverlay={"initContainers": [
        {"name": "warm", "image": "w:1", "restartPolicy": "Never"}]}),
        "spec.podOverlay.initContainers[0].restartPolicy"),
    Invalid(
        "node-field-selector-not-a-node-name",
        with_(VALID_SPEC, affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["A"]}]}}]}}),
        "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchFields[0].values[0]",
    ),
    Invalid(
        "label-key-prefix-over-253",
        with_(VALID_SPEC, tolerations=[{"key": "a" * 254 + "/b", "operator": "Exists"}]),
        "spec.tolerations[0].key",
    ),
    Invalid("toleration-key-with-colon", with_(VALID_SPEC, tolerations=[{"key": "x:1", "operator": "Exists"}]),
            "spec.tolerations[0].key"),
    Invalid(
        "duplicate-sysctl",
        with_(VALID_SPEC, podOverlay={"securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                                                                      {"name": "kernel.shm_rmid_forced", "value": "0"}]}}),
        "spec.podOverlay.securityContext.sysctls",
        message="sysctl names must be unique",
    ),
    Invalid("selinux-mount-option", with_(VALID_SPEC, podOverlay={"securityContext": {"seLinuxChangePolicy": "MountOption"}}),
            "spec.podOverlay.securityContext.seLinuxChangePolicy"),
    Invalid("hugepages-not-a-page-multiple", with_(VALID_SPEC, resources={"limits": {"memory": "1Gi", "hugepages-2Mi": 17600}}),
            "spec.resources", message="whole multiples of the page size"),
    Invalid(
        "seccomp-absolute-localhost-profile",
        with_(VALID_SPEC, podOverlay={"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "/p"}}}),
        "spec.podOverlay.securityContext.seccompProfile.localhostProfile",
    ),
    Invalid("field-ref-bad-label-key", with_(VALID_SPEC, env=[{"name": "A", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.labels['a b']"}}}]), "spec.env[0].valueFrom.fieldRef.fieldPath"),
    Invalid(
        "canary-without-steps",
        with_(VALID_SPEC, rollout={"strategy": "Canary"}),
        "spec.rollout.steps",
        message="strategy Canary needs at least one step",
    ),
    Invalid("check-path-without-slash", checks(path="classify"), "spec.predictionChecks.checks[0].path"),
    Invalid("check-without-expectation", checks(expect=[]), "spec.predictionChecks.checks[0].expect"),
    Invalid(
        "expectation-of-two-kinds",
        checks(expect=[{"jsonPath": "$.p", "number": 0.9, "oneOf": ["setosa"]}]),
        "spec.predictionChecks.checks[0].expect[0]",
        message="exactly one of equals, number or oneOf",
    ),
    Invalid(
        "expectation-of-no-kind",
        checks(expect=[{"jsonPath": "$[0]"}]),
        "predictionChecks.checks.0.expect.0",
        message="exactly one of equals, number or oneOf",
        admission=False,
    ),
    Invalid(
        "equals-and-number",
        checks(expect=[{"jsonPath": "$[0]", "equals": 1, "number": 1}]),
        "predictionChecks.checks.0.expect.0",
        message="exactly one of equals, number or oneOf",
        admission=False,
    ),
    Invalid(
        "label-not-a-string-or-integer",
        checks(expect=[{"jsonPath": "$[0]", "oneOf": [1.5]}]),
        "spec.predictionChecks.checks[0].expect[0].oneOf[0]",
    ),
    Invalid(
        "negative-tolerance",
        checks(expect=[{"jsonPath": "$.p", "number": 0.9, "tolerance": -0.1}]),
        "spec.predictionChecks.checks[0].expect[0].tolerance",
    ),
    Invalid(
        "tolerance-with-labels",
        checks(expect=[{"jsonPath": "$[0]", "oneOf": ["setosa"], "tolerance": 0.1}]),
        "spec.predictionChecks.checks[0].expect[0].tolerance",
        message="not oneOf",
    ),
    Invalid(
        "json-path-not-from-root",
        checks(expect=[{"jsonPath": "[0]", "equals": "setosa"}]),
        "spec.predictionChecks.checks[0].expect[0].jsonPath",
    ),
    Invalid(
        "body-and-body-from",
        checks(bodyFrom={"configMapKeyRef": {"name": "golden", "key": "setosa.json"}}),
        "spec.predictionChecks.checks[0]",
        message="exactly one of body or bodyFrom",
    ),
    Invalid(
        "post-without-body",
        with_(VALID_SPEC, predictionChecks={"checks": [{k: v for k, v in GOLDEN.items() if k != "body"}]}),
        "spec.predictionChecks.checks[0]",
        message="exactly one of body or bodyFrom",
    ),
    Invalid("check-timeout", checks(timeout="soon"), "spec.predictionChecks.checks[0].timeout"),
    # A request to a tenant's pod has a deadline kubento can keep (#23: `timeout: 10000h` held a worker).
    Invalid("check-timeout-over-60s", checks(timeout="10000h"), "spec.predictionChecks.checks[0].timeout",
            message="at most 60s"),
    Invalid("check-timeout-zero", checks(timeout="0s"), "spec.predictionChecks.checks[0].timeout",
            message="more than 0s"),
    Invalid(
        "comparison-timeout-over-60s",
        with_(VALID_SPEC, predictionChecks={"compareWithStable": {**COMPARE, "timeout": "61s"}}),
        "spec.predictionChecks.compareWithStable.timeout",
        message="at most 60s",
    ),
    Invalid(
        "duplicate-check-names",
        with_(VALID_SPEC, predictionChecks={"checks": [GOLDEN, GOLDEN]}),
        "spec.predictionChecks.checks[1]",
        message="Duplicate value",
    ),
    Invalid(
        "no-checks-and-no-comparison",
        with_(VALID_SPEC, predictionChecks={"checks": []}),
        "spec.predictionChecks",
        message="at least one check or compareWithStable",
    ),
    Invalid(
        "min-agreement-above-1",
        with_(VALID_SPEC, predictionChecks={"compareWithStable": {**COMPARE, "minAgreement": 1.5}}),
        "spec.predictionChecks.compareWithStable.minAgreement",
    ),
    Invalid(
        "comparison-without-inputs",
        with_(VALID_SPEC, predictionChecks={"compareWithStable": {"path": "/classify", "minAgreement": 0.9}}),
        "spec.predictionChecks.compareWithStable.inputs",
    ),
    # Data quality (issue #28)
    Invalid("monitoring-with-an-image", with_(VALID_SPEC, monitoring={"payloads": {"sampleRate": 0.1}}),
            "spec.monitoring", message="bento.archive and bento.build only"),
    Invalid("monitoring-with-nothing", monitored({}), "spec.monitoring", message="payloads, statistics or both"),
    Invalid("sample-rate-above-1", monitored({"payloads": {"sampleRate": 1.5}}), "spec.monitoring.payloads.sampleRate"),
    Invalid("payloads-without-a-sink", monitored({"payloads": {"sampleRate": 0.1, "stdout": False}}),
            "spec.monitoring.payloads", message="at least one sink"),
    Invalid("payload-sink-not-http", monitored({"payloads": {"sampleRate": 0.1, "http": {"url": "ftp://x/"}}}),
            "spec.monitoring.payloads.http.url"),
    Invalid("payload-files-leave-the-volume",
            monitored({"payloads": {"sampleRate": 0.1, "files": {"claimName": "logs", "path": "a/../../etc"}}}),
            "spec.monitoring.payloads.files.path"),
    Invalid("drop-path-not-from-root", monitored({"payloads": {"sampleRate": 0.1, "drop": ["user.email"]}}),
            "spec.monitoring.payloads.drop[0]"),
    Invalid("feature-path-not-a-field-path", monitored(stats(inputs=[{"name": "a", "path": "$[?@.x]"}])),
            "spec.monitoring.statistics.inputs[0].path"),
    Invalid("feature-name-not-a-label", monitored(stats(inputs=[{"name": "a b", "path": "$[0]"}])),
            "spec.monitoring.statistics.inputs[0].name"),
    Invalid("buckets-not-ascending", monitored(stats(inputs=[{"name": "a", "path": "$[0]", "buckets": [2, 1]}])),
            "spec.monitoring.statistics.inputs[0].buckets", message="strictly ascending"),
    Invalid("categories-of-a-number",
            monitored(stats(inputs=[{"name": "a", "path": "$[0]", "categories": ["x"]}])),
            "spec.monitoring.statistics.inputs[0].categories", message="type categorical"),
    Invalid("duplicate-feature-names",
            monitored(stats(inputs=[{"name": "a", "path": "$[0]"}, {"name": "a", "path": "$[1]"}])),
            "spec.monitoring.statistics.inputs[1]", message="Duplicate value"),
    Invalid("output-shift-without-outputs",
            with_(monitored(stats()), rollout={**CANARY, "analysis": {"outputShift": {"maxDistance": 0.2}}}),
            "spec.rollout", message="needs monitoring.statistics.output"),
    Invalid("output-shift-without-a-canary",
            with_(monitored(stats(output={"categories": ["a"]})),
                  rollout={"strategy": "BlueGreen", "analysis": {"outputShift": {"maxDistance": 0.2}}}),
            "spec.rollout", message="needs strategy Canary"),
    Invalid("output-shift-distance-0",
            with_(monitored(stats(output={"categories": ["a"]})),
                  rollout={**CANARY, "analysis": {"outputShift": {"maxDistance": 0}}}),
            "spec.rollout.analysis.outputShift.maxDistance"),
    # traffic.gateway (issue #25)
    Invalid("shadow-step-without-mirror", with_(VALID_SPEC, traffic=GATEWAY, rollout={"strategy": "Canary", "steps": [
        {"weight": 0}]}), "spec.rollout.steps[0].weight", message="shadow step"),
    Invalid("mirror-with-weight", with_(VALID_SPEC, traffic=GATEWAY, rollout={"strategy": "Canary", "steps": [
        {"weight": 10, "mirror": 50}]}), "spec.rollout.steps[0].mirror", message="shadow step"),
    Invalid("mirror-without-gateway", with_(VALID_SPEC, rollout={"strategy": "Canary", "steps": [
        {"weight": 0, "mirror": 100}, {"weight": 50}]}), "spec.rollout.steps", message="needs traffic.gateway"),
    Invalid("mirror-over-100", with_(VALID_SPEC, traffic=GATEWAY, rollout={"strategy": "Canary", "steps": [
        {"weight": 0, "mirror": 150}]}), "spec.rollout.steps[0].mirror"),
    Invalid("gateway-without-parents", with_(VALID_SPEC, traffic={"gateway": {"parentRefs": []}}),
            "spec.traffic.gateway.parentRefs"),
    Invalid("gateway-same-parent-twice", with_(VALID_SPEC, traffic={"gateway": {"parentRefs": [{"name": "gw"}, {"name": "gw"}]}}),
            "spec.traffic.gateway.parentRefs", message="must be unique"),
    Invalid("gateway-bad-hostname", with_(VALID_SPEC, traffic={"gateway": {"parentRefs": [{"name": "gw"}],
                                                                           "hostnames": ["Iris.Example.com"]}}),
            "spec.traffic.gateway.hostnames[0]"),
    Invalid("gateway-ip-hostname-wildcard-inside", with_(VALID_SPEC, traffic={"gateway": {
        "parentRefs": [{"name": "gw"}], "hostnames": ["iris.*.example.com"]}}), "spec.traffic.gateway.hostnames[0]"),
    Invalid("gateway-relative-path", with_(VALID_SPEC, traffic={"gateway": {"parentRefs": [{"name": "gw"}],
                                                                            "pathPrefix": "iris"}}),
            "spec.traffic.gateway.pathPrefix"),
    Invalid("gateway-fractional-timeout", with_(VALID_SPEC, traffic={"gateway": {"parentRefs": [{"name": "gw"}],
                                                                                 "requestTimeout": "1.5s"}}),
            "spec.traffic.gateway.requestTimeout"),
    Invalid("gateway-retry-4xx", with_(VALID_SPEC, traffic={"gateway": {"parentRefs": [{"name": "gw"}],
                                                                        "retry": {"attempts": 2, "codes": [404]}}}),
            "spec.traffic.gateway.retry.codes[0]"),
    Invalid("gateway-bad-header", with_(VALID_SPEC, traffic={"gateway": {"parentRefs": [{"name": "gw"}],
                                                                         "revisionHeader": "x revision"}}),
            "spec.traffic.gateway.revisionHeader"),
    Invalid("services-not-a-service-name", with_(VALID_SPEC, services={"model-svc": {"replicas": 2}}),
            "spec.services", message="model-svc is not a BentoML service name"),
    Invalid("services-replicas-and-autoscaling", with_(VALID_SPEC, services={
        "Model": {"replicas": 2, "autoscaling": {"maxReplicas": 3}}}), "spec.services[Model].replicas",
            message="replicas and autoscaling exclude each other"),
    Invalid("services-min-above-max", with_(VALID_SPEC, services={
        "Model": {"autoscaling": {"minReplicas": 4, "maxReplicas": 3}}}), "spec.services[Model].autoscaling.minReplicas"),
]
