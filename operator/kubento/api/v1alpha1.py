"""ModelDeployment, serving.kubento.io/v1alpha1.

These models are the one definition of the API. The CRD in crds/ (its OpenAPI
schema, descriptions for ``kubectl explain`` and the CEL rules) is generated
from them, and the operator parses every object it handles with them.

Cross-field rules are written twice on purpose, side by side: as CEL (so the
API server rejects bad specs at ``kubectl apply``) and as a pydantic validator
(so the operator and unit tests see the same rule). ``tests/unit`` runs one
table of invalid specs through pydantic; the integration tier sends the same
table to a real API server.

This module is the API as one import: the identity of the kind, the spec
(its pod fields here) and, re-exported, each section's models from its own
module: bento (sources), environment, resources, autoscaling, rollout,
checks (prediction checks), monitoring (data quality), traffic, status; the
shared vocabulary (durations, quantities, names, CEL entries) is in common.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

from pydantic import ConfigDict, Field, model_validator

from kubento.api.common import (  # noqa: F401 - the API's vocabulary, re-exported
    DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, LABEL_VALUE, QUALIFIED_NAME, QUANTITY_PATTERN, Model, Quantity, cel,
    map_keys_rule, quantity_value, rules as _rules,
)
from kubento.api.common import (  # noqa: F401 - re-exported: the API in one module
    DURATION_PATTERN, Duration, LIST_MAP_BY_NAME, MAX_REQUEST_TIMEOUT, REQUEST_TIMEOUT_MESSAGE, RequestTimeout,
    SecretReference, duration_seconds,
)
from kubento.api.bento import (  # noqa: F401 - re-exported: the API in one module
    ARCHIVE_URI_PATTERN, ArchiveSource, BentoSource, BuildOutput, BuildSource, ConfigMapProjectSource,
    GitProjectSource, OCI_URI_PATTERN, PVCProjectSource, ProjectSource,
)
from kubento.api.environment import (  # noqa: F401 - re-exported: the API in one module
    CABundle, PackageIndex, PythonEnvironment,
)
from kubento.api.resources import (  # noqa: F401 - re-exported: the API in one module
    RESOURCE_RULES, Resources,
)
from kubento.api.services import (  # noqa: F401 - re-exported: the API in one module
    SERVICE_KEYS_RULE, SERVICE_NAME_RE, ServiceAutoscaling, ServiceSettings,
)
from kubento.api.autoscaling import (  # noqa: F401 - re-exported: the API in one module
    Autoscaling, Behavior, DEFAULT_TARGETS, KEDA_OWN_METRICS, Metric, ScalingRules,
)
from kubento.api.rollout import (  # noqa: F401 - re-exported: the API in one module
    Analysis, CANARY_NEEDS_STEPS, Rollout, RolloutStep,
)
from kubento.api.checks import (  # noqa: F401 - re-exported: the API in one module
    ConfigMapKeyRef, Expectation, InputSource, JSON_PATH_DESCRIPTION, JSON_PATH_PATTERN, JsonPathText, Label,
    PredictionCheck, PredictionChecks, StableComparison,
)
from kubento.api.monitoring import (  # noqa: F401 - re-exported: the API in one module
    BUCKETS_RULE, CategoryName, FIELD_PATH_DESCRIPTION, FieldPath, FieldStatistics, KIND_RULES, MAX_BUCKETS,
    MAX_CATEGORIES, MONITORING_NEEDS_RUNTIME, Monitoring, OUTPUT_SHIFT_NEEDS_CANARY, OUTPUT_SHIFT_NEEDS_OUTPUT,
    OutputShift, OutputStatistics, PayloadFiles, PayloadHTTPSink, Payloads, ProfileSource, STAT_NAME_PATTERN,
    Statistics,
)
from kubento.api.status import (  # noqa: F401 - re-exported: the API in one module
    Agreement, AutoscalingStatus, BuildStatus, Condition, ConditionType, EnvironmentStatus, HistoryEntry,
    ModelDeploymentStatus, Phase, RolloutStatus,
)
from kubento.api.traffic import Traffic, TrafficStatus  # noqa: F401
from kubento.api.k8s import SHM_PATH, SHM_VOLUME, Rule, k8s_model, resource_rules
from kubento.runtime.fields import PATH_PATTERN

GROUP = "serving.kubento.io"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]
CATEGORIES = ["kubento"]


# Kubernetes types, generated from Kubernetes' own OpenAPI (api/k8s.py).
EnvVar = k8s_model("EnvVar")
EnvFromSource = k8s_model("EnvFromSource")
Toleration = k8s_model("Toleration")
Affinity = k8s_model("Affinity")
TopologySpreadConstraint = k8s_model("TopologySpreadConstraint")
Volume = k8s_model("Volume")
VolumeMount = k8s_model("VolumeMount")
PodOverlay = k8s_model("PodSpec", "overlay")


# --------------------------------------------------------------------- spec


# -------------------------------------------------------------------- pods

# What kubento puts in every pod, which the pod fields must leave alone.
LABEL_PREFIX = f"{GROUP}/"  # the labels kubento selects pods on
KUBENTO_VOLUMES = ("bentoml-home", "work", SHM_VOLUME, "registry-auth", "kubento-payloads")  # and pvc-<hash> for a pvc:// archive
KUBENTO_PVC_VOLUME = r"^pvc-[0-9a-f]{12}$"
RUNTIME_DIR = "/var/lib/kubento"  # where kubento mounts its volumes (archive bentos)
DEFAULT_STARTUP_SECONDS = 600
DEFAULT_GRACE_SECONDS = 35
PRESTOP_SECONDS = 5
# Pod annotations: 64 of at most 3700 characters keep the pod's annotations
# (keys included) under the API server's 256 KiB.
ANNOTATION_VALUE_MAX = 3700
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]


def _overlay_containers(o: dict[str, Any]) -> list[dict[str, Any]]:
    overlay = o.get("podOverlay") or {}
    return (overlay.get("containers") or []) + (overlay.get("initContainers") or [])


def _volume_names(o: dict[str, Any]) -> set[str]:
    return {v["name"] for v in o.get("volumes") or []} | ({SHM_VOLUME} if "shmSize" in o else set())


def _each_overlay_container(test: str) -> str:
    """CEL: ``test`` (on ``c``) holds for every container and init container of podOverlay."""
    return (f"!has(self.podOverlay) || ((!has(self.podOverlay.containers) || self.podOverlay.containers.all(c, {test})) && "
            f"(!has(self.podOverlay.initContainers) || self.podOverlay.initContainers.all(c, {test})))")


_GRACE = f"(has(self.terminationGracePeriodSeconds) ? self.terminationGracePeriodSeconds : {DEFAULT_GRACE_SECONDS})"
_DEADLINE = ("(has(self.rollout) && has(self.rollout.progressDeadlineSeconds) ? "
             "self.rollout.progressDeadlineSeconds : 600)")


def _sleeps(c: dict[str, Any]) -> list[int]:
    life = c.get("lifecycle") or {}
    return [h["sleep"]["seconds"] for h in (life.get("postStart"), life.get("preStop")) if h and "sleep" in h]


POD_RULES = (
    Rule("!has(self.startupTimeoutSeconds) || self.startupTimeoutSeconds <= " + _DEADLINE,
         "rollout.progressDeadlineSeconds (default 600) must be at least startupTimeoutSeconds: a model still "
         "loading would be rolled back",
         lambda o: "startupTimeoutSeconds" not in o
         or o["startupTimeoutSeconds"] <= (o.get("rollout") or {}).get("progressDeadlineSeconds", 600),
         ".startupTimeoutSeconds"),
    Rule(f"!has(self.volumes) || self.volumes.all(v, !(v.name in {list(KUBENTO_VOLUMES)}) && "
         f"!v.name.matches('{KUBENTO_PVC_VOLUME}'))",
         f"volume names {', '.join(KUBENTO_VOLUMES)} and pvc-<12 hex digits> are kubento's",
         lambda o: not any(v["name"] in KUBENTO_VOLUMES or re.fullmatch(KUBENTO_PVC_VOLUME[1:-1], v["name"])
                           for v in o.get("volumes") or []),
         ".volumes"),
    Rule("!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
         "every volumeMounts[].name must be one of spec.volumes",
         lambda o: all(m["name"] in {v["name"] for v in o.get("volumes") or []} for m in o.get("volumeMounts") or []),
         ".volumeMounts"),
    Rule(f"!has(self.volumeMounts) || self.volumeMounts.all(m, !(m.mountPath == '{RUNTIME_DIR}' || "
         f"m.mountPath.startsWith('{RUNTIME_DIR}/')) && !(has(self.shmSize) && m.mountPath in ['{SHM_PATH}', '{SHM_PATH}/']))",
         f"{RUNTIME_DIR} is kubento's, and so is {SHM_PATH} when shmSize is set",
         lambda o: not any(m["mountPath"] == RUNTIME_DIR or m["mountPath"].startswith(RUNTIME_DIR + "/")
                           or ("shmSize" in o and m["mountPath"] in (SHM_PATH, SHM_PATH + "/"))
                           for m in o.get("volumeMounts") or []),
         ".volumeMounts"),
    Rule(_each_overlay_container("!has(c.volumeMounts) || c.volumeMounts.all(m, "
         f"(has(self.volumes) && self.volumes.exists(v, v.name == m.name)) || (has(self.shmSize) && m.name == '{SHM_VOLUME}'))"),
         f"an added container's volumeMounts must name one of spec.volumes (or {SHM_VOLUME} with shmSize)",
         lambda o: all(m["name"] in _volume_names(o) for c in _overlay_containers(o) for m in c.get("volumeMounts") or []),
         ".podOverlay"),
    Rule(_each_overlay_container("!has(c.ports) || c.ports.all(p, p.containerPort != self.port)"),
         "an added container must not listen on the model's port (spec.port)",
         lambda o: not any(p["containerPort"] == o.get("port", 3000) for c in _overlay_containers(o)
                           for p in c.get("ports") or []),
         ".podOverlay"),
    Rule(_each_overlay_container(
        "!has(c.lifecycle) || [c.lifecycle.?postStart.sleep.seconds, c.lifecycle.?preStop.sleep.seconds]"
        f".all(s, !s.hasValue() || s.value() <= {_GRACE})"),
         "a lifecycle sleep must not be longer than terminationGracePeriodSeconds (default 35)",
         lambda o: all(sec <= o.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
                       for c in _overlay_containers(o) for sec in _sleeps(c)),
         ".podOverlay"),
)


MIRROR_NEEDS_GATEWAY = ("rollout.steps[].mirror needs traffic.gateway (a RequestMirror filter on the model's "
                        "HTTPRoute)")


class ModelDeploymentSpec(Model):
    """A BentoML service to serve: where the bento comes from, how its pods
    run, how it scales and how new versions roll out."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "!has(self.runtimeImage) || !has(self.bento.image)",
                "runtimeImage applies to bento.archive and bento.build only",
                ".runtimeImage",
            ),
            cel(
                "!has(self.python) || !has(self.bento.image)",
                "python applies to bento.archive and bento.build only (an image has its packages)",
                ".python",
            ),
            cel(
                "!has(self.env) || self.env.all(e, e.name != 'BENTOML_PORT')",
                "BENTOML_PORT is set from spec.port; set port instead",
                ".env",
            ),
            cel(
                "!has(self.autoscaling) || !(self.autoscaling.metric in ['cpu', 'memory']) || "
                "(has(self.resources) && has(self.resources.requests) && "
                "self.autoscaling.metric in self.resources.requests)",
                "autoscaling on cpu or memory needs resources.requests for that resource "
                "(utilization is measured against the request)",
                ".autoscaling",
            ),
            cel(
                "!has(self.rollout) || !has(self.rollout.steps) || self.rollout.steps.all(s, !has(s.mirror)) || "
                "(has(self.traffic) && has(self.traffic.gateway))",
                MIRROR_NEEDS_GATEWAY,
                ".rollout.steps",
            ),
            *(r.entry() for r in POD_RULES),
            cel("!has(self.monitoring) || !has(self.bento.image)", MONITORING_NEEDS_RUNTIME, ".monitoring"),
            cel("!has(self.rollout) || !has(self.rollout.analysis) || !has(self.rollout.analysis.outputShift) || "
                "(has(self.monitoring) && has(self.monitoring.statistics) && has(self.monitoring.statistics.output))",
                OUTPUT_SHIFT_NEEDS_OUTPUT, ".rollout"),
            cel("!has(self.rollout) || !has(self.rollout.analysis) || !has(self.rollout.analysis.outputShift) || "
                "self.rollout.strategy == 'Canary'", OUTPUT_SHIFT_NEEDS_CANARY, ".rollout"),
        )
    )

    bento: BentoSource = Field(description="The BentoML service: exactly one of image, archive or build.")
    runtime_image: Optional[str] = Field(
        default=None,
        min_length=1,
        max_length=1024,
        pattern=r"^\S+$",
        description="Image that runs an imported archive or build (default: the operator's runtime image).",
    )
    python: Optional[PythonEnvironment] = Field(
        default=None,
        description=(
            "The bento's Python packages (archive and build): where they are installed from. Every archive or "
            "build gets an environment for what the runtime image lacks, with or without this field."
        ),
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Model server pods, when autoscaling is not set.")
    port: int = Field(default=3000, ge=1, le=65535, description="Port the BentoML server listens on.")
    resources: Optional[Resources] = Field(default=None, description="CPU, memory and GPU requests and limits.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        description="Environment variables of the model server (BENTOML_PORT is set from port).",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    env_from: Optional[list[EnvFromSource]] = Field(
        default=None,
        max_length=32,
        description="ConfigMaps and Secrets whose keys become environment variables of the model server "
        "(env wins over them).",
    )
    volumes: Optional[list[Volume]] = Field(
        default=None,
        max_length=64,
        description="Volumes of the pod: mounted into the model server by volumeMounts, and into added "
        "containers (podOverlay) by theirs. E.g. a PersistentVolumeClaim with the weights, a ConfigMap, a "
        "Secret, a CSI volume, an emptyDir.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    volume_mounts: Optional[list[VolumeMount]] = Field(
        default=None,
        max_length=64,
        description="Where the model server sees spec.volumes (name: a volume, mountPath: an absolute path).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"]},
    )
    shm_size: Optional[Quantity] = Field(
        default=None,
        description=f"Size of an in-memory {SHM_PATH} (an emptyDir with medium Memory), e.g. 1Gi for PyTorch data "
        "loaders; it counts against the container's memory limit. Default: the container runtime's 64Mi.",
        json_schema_extra=_rules(cel("quantity(string(self)).isGreaterThan(quantity('0'))", "must be greater than 0")),
    )
    startup_timeout_seconds: Optional[int] = Field(
        default=None,
        ge=1,
        le=86400,
        description=f"How long the model may take to load: the pod is restarted when its server has not answered "
        f"/readyz within about this many seconds (default {DEFAULT_STARTUP_SECONDS}). Raise it for large models; "
        "rollout.progressDeadlineSeconds must be at least as long.",
    )
    termination_grace_period_seconds: Optional[int] = Field(
        default=None,
        ge=PRESTOP_SECONDS + 1,
        le=86400,
        description=f"Seconds a stopping pod gets to finish its requests (default {DEFAULT_GRACE_SECONDS}); the "
        f"first {PRESTOP_SECONDS} let the endpoint removal reach every node. Longer than your slowest request; a "
        "bento served from an archive also waits for its task endpoints' tasks (finished and fetched) within it.",
    )
    runtime_class_name: Optional[str] = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN,
        description="RuntimeClass of the pods, e.g. nvidia on GPU nodes whose runtime needs it.",
    )
    priority_class_name: Optional[str] = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN,
        description="PriorityClass of the pods (which pods are preempted first when the cluster is full).",
    )
    topology_spread_constraints: Optional[list[TopologySpreadConstraint]] = Field(
        default=None,
        max_length=8,
        description="How the pods spread across zones or nodes. labelSelector defaults to this model's pods.",
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["topologyKey", "whenUnsatisfiable"]},
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=64, description="Node labels the pods must match.",
        json_schema_extra=_rules(map_keys_rule(QUALIFIED_NAME, "label key")),
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64, description="Taints the pods tolerate.")
    affinity: Optional[Affinity] = Field(default=None, description="Pod scheduling constraints.")
    service_account_name: Optional[str] = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="ServiceAccount the pods run as."
    )
    image_pull_secrets: list[SecretReference] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets (in this namespace) used to pull the images.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    pod_labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=64,
        description=f"Extra labels on the pods (keys under {LABEL_PREFIX} are kubento's; app.kubernetes.io/name, "
        "instance, component, part-of and managed-by are set by kubento).",
        json_schema_extra=_rules(
            map_keys_rule(QUALIFIED_NAME, "label key"),
            cel(f"self.all(k, !k.startsWith('{LABEL_PREFIX}'))", f"label keys under {LABEL_PREFIX} are kubento's"),
        ),
    )
    pod_annotations: dict[str, Annotated[str, Field(max_length=ANNOTATION_VALUE_MAX)]] = Field(
        default_factory=dict, max_length=64, description="Extra annotations on the pods.",
        json_schema_extra=_rules(cel(
            "self.all(k, !format.qualifiedName().validate(k.lowerAscii()).hasValue())",
            f"annotation keys must be {QUALIFIED_NAME.what}",
            message_expression="'annotation key ' + self.filter(k, format.qualifiedName().validate(k.lowerAscii())"
            ".hasValue())[0] + ' is not ' + " + repr(QUALIFIED_NAME.what),
        )),
    )
    pod_overlay: Optional[PodOverlay] = Field(
        default=None,
        description="For what the fields above do not cover: sidecars, init containers, the pod's security "
        "context, DNS, host aliases. Merged into the pod kubento generates like a strategic merge patch "
        "(containers by name, maps key by key). The parts kubento owns are refused: the model container's "
        "image, command, ports, env, resources, volume mounts, probes and lifecycle, the fetch-bento init "
        "container, and every field above (set those there).",
    )
    autoscaling: Optional[Autoscaling] = Field(default=None, description="Scale between minReplicas and maxReplicas.")
    services: Optional[dict[str, ServiceSettings]] = Field(
        default=None, max_length=16,
        description="A bento of several BentoML services runs each in its own Deployment: the settings of those "
        "other than the entry, by service name (the entry's are replicas, resources and autoscaling).",
        json_schema_extra=_rules(SERVICE_KEYS_RULE),
    )
    rollout: Rollout = Field(default_factory=Rollout, description="How new revisions replace the running one.")
    traffic: Optional[Traffic] = Field(
        default=None, description="How requests reach the model: its Service only (unset), or also a Gateway.")
    prediction_checks: Optional[PredictionChecks] = Field(
        default=None,
        description=(
            "Known inputs each new pod must answer correctly before it takes traffic, and an optional "
            "comparison of a new revision with the stable one. Unset: no readiness gate, pods serve once "
            "their probes pass."
        ),
    )

    monitoring: Optional[Monitoring] = Field(
        default=None,
        description="Sampled payload logs and per-revision input/output statistics (drift), measured in the model "
        "pod (bento.archive and bento.build only). Part of the revision: a change rolls out as a new revision.",
    )

    @model_validator(mode="after")
    def _runtime_image(self) -> "ModelDeploymentSpec":
        if self.runtime_image and self.bento.image:
            raise ValueError("runtimeImage applies to bento.archive and bento.build only")
        if self.monitoring is not None and self.bento.image:
            raise ValueError(MONITORING_NEEDS_RUNTIME)
        shift = self.rollout.analysis.output_shift if self.rollout.analysis else None
        if shift is not None and not (self.monitoring and self.monitoring.statistics
                                      and self.monitoring.statistics.output):
            raise ValueError(OUTPUT_SHIFT_NEEDS_OUTPUT)
        if shift is not None and self.rollout.strategy != "Canary":
            raise ValueError(OUTPUT_SHIFT_NEEDS_CANARY)
        if self.python is not None and self.bento.image:
            raise ValueError("python applies to bento.archive and bento.build only (an image has its packages)")
        if any(e.name == "BENTOML_PORT" for e in self.env):
            raise ValueError("BENTOML_PORT is set from spec.port; set port instead")
        names = [e.name for e in self.env]
        if len(names) != len(set(names)):
            raise ValueError("env names must be unique")
        if any(st.mirror is not None for st in self.rollout.steps) and (self.traffic is None or self.traffic.gateway is None):
            raise ValueError(MIRROR_NEEDS_GATEWAY)
        scaling = self.autoscaling
        if scaling and scaling.metric in ("cpu", "memory"):
            if self.resources is None or scaling.metric not in self.resources.requests:
                raise ValueError(
                    "autoscaling on cpu or memory needs resources.requests for that resource "
                    "(utilization is measured against the request)"
                )
        return self

    @model_validator(mode="after")
    def _pod(self) -> "ModelDeploymentSpec":
        for key in self.node_selector:
            if not QUALIFIED_NAME.valid(key):
                raise ValueError(f"nodeSelector: label key {key!r} must be {QUALIFIED_NAME.what}")
        for key in self.pod_labels:
            if not QUALIFIED_NAME.valid(key) or key.startswith(LABEL_PREFIX):
                raise ValueError(f"podLabels: label key {key!r} must be {QUALIFIED_NAME.what}, not under {LABEL_PREFIX}")
        for key in self.pod_annotations:
            if not QUALIFIED_NAME.valid(key.lower()):
                raise ValueError(f"podAnnotations: annotation key {key!r} must be {QUALIFIED_NAME.what}")
        for name, settings in (self.services or {}).items():
            if not SERVICE_NAME_RE.fullmatch(name):
                raise ValueError(f"services: {name!r} is not a BentoML service name (its class name, e.g. Model)")
            if settings.replicas is not None and settings.autoscaling is not None:
                raise ValueError(f"services.{name}: replicas and autoscaling exclude each other")
            scaling = settings.autoscaling
            if scaling and scaling.min_replicas > scaling.max_replicas:
                raise ValueError(f"services.{name}.autoscaling: minReplicas must be less than or equal to maxReplicas")
        if self.shm_size is not None and quantity_value(self.shm_size) <= 0:
            raise ValueError("shmSize must be greater than 0")
        wire = self.wire()
        for rule in POD_RULES:
            if not rule.ok(wire):
                raise ValueError(f"{rule.field_path.lstrip('.')}: {rule.message}")
        return self
