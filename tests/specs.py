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
    name: str = "bad"
    message: str = ""  # and, where the field alone is ambiguous, what it must say


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
        with_(VALID_SPEC, rollout={"strategy": "Canary", "analysis": {"maxErrorRate": 2}}),
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
    Invalid("name-too-long", VALID_SPEC, "metadata.name", pydantic=False, name="m" * 53),
]
