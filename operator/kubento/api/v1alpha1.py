"""ModelDeployment, serving.kubento.io/v1alpha1.

These models are the one definition of the API. The CRD in crds/ (its OpenAPI
schema, descriptions for ``kubectl explain`` and the CEL rules) is generated
from them, and the operator parses every object it handles with them.

Cross-field rules are written twice on purpose, side by side: as CEL (so the
API server rejects bad specs at ``kubectl apply``) and as a pydantic validator
(so the operator and unit tests see the same rule). ``tests/unit`` runs one
table of invalid specs through pydantic; the integration tier sends the same
table to a real API server.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from kubento.api.common import (  # noqa: F401 - the API's vocabulary, re-exported
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    LABEL_VALUE,
    QUALIFIED_NAME,
    QUANTITY_PATTERN,
    Model,
    Quantity,
    cel,
    map_keys_rule,
    quantity_value,
    rules as _rules,
)
from kubento.api.traffic import Traffic, TrafficStatus
from kubento.api.k8s import SHM_PATH, SHM_VOLUME, Rule, k8s_model, resource_rules
from kubento.runtime.fields import PATH_PATTERN

GROUP = "serving.kubento.io"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]
CATEGORIES = ["kubento"]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# oci://REGISTRY[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST] (kubento.runtime.oci parses the same shape)
OCI_URI_PATTERN = (r"oci://[A-Za-z0-9.-]+(:[0-9]+)?/[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
                   r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?")
ARCHIVE_URI_PATTERN = rf"^((s3|https?|pvc)://[^\s]+|{OCI_URI_PATTERN})$"

# Kubernetes types, generated from Kubernetes' own OpenAPI (api/k8s.py).
EnvVar = k8s_model("EnvVar")
EnvFromSource = k8s_model("EnvFromSource")
Toleration = k8s_model("Toleration")
Affinity = k8s_model("Affinity")
TopologySpreadConstraint = k8s_model("TopologySpreadConstraint")
Volume = k8s_model("Volume")
VolumeMount = k8s_model("VolumeMount")
PodOverlay = k8s_model("PodSpec", "overlay")

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")


def duration_seconds(duration: str) -> float:
    """An API Duration (``500ms``, ``30s``, ``5m``, ``1h``, ``1m30s``) in seconds."""
    if not isinstance(duration, str) or not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"{duration!r} is not a duration (e.g. 500ms, 30s, 5m, 1h, 1m30s)")
    return sum(float(n) * _UNIT_MS[u] for n, u in _DURATION_PART.findall(duration)) / 1000


# A request kubento sends to a pod waits at most this long: a deadline for all
# of it (connect, headers, body), so a tenant's pod cannot hold the operator.
MAX_REQUEST_TIMEOUT = "60s"
REQUEST_TIMEOUT_MESSAGE = f"must be more than 0s and at most {MAX_REQUEST_TIMEOUT} (a deadline for the whole request)"


def _request_timeout(value: str) -> str:
    if not 0 < duration_seconds(value) <= duration_seconds(MAX_REQUEST_TIMEOUT):
        raise ValueError(REQUEST_TIMEOUT_MESSAGE)
    return value


RequestTimeout = Annotated[
    str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=_rules(cel(
        f"duration(self) > duration('0s') && duration(self) <= duration('{MAX_REQUEST_TIMEOUT}')",
        REQUEST_TIMEOUT_MESSAGE))),
    AfterValidator(_request_timeout),
]


# Lists whose items are unique by name (server-side apply merges them by name).
LIST_MAP_BY_NAME = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


# --------------------------------------------------------------------- bento


class SecretReference(Model):
    """A Secret in the ModelDeployment's namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Secret."
    )


class ArchiveSource(Model):
    """A ``.bento`` archive written by ``bentoml export``, imported into the
    runtime image by an init container when each pod starts."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel("!has(self.caBundle) || self.uri.startsWith('oci://')", "caBundle applies to oci:// archives only"),
            cel("!has(self.plainHTTP) || !self.plainHTTP || self.uri.startsWith('oci://')",
                "plainHTTP applies to oci:// archives only"),
            cel("!has(self.secretRef) || !self.uri.startsWith('oci://')",
                "an oci:// archive is fetched with the ModelDeployment's imagePullSecrets, not secretRef"),
        )
    )

    uri: str = Field(
        pattern=ARCHIVE_URI_PATTERN,
        max_length=2048,
        description=(
            "Where the archive is: s3://bucket/key.bento, http(s)://host/path.bento, "
            "pvc://claim-name/path/in/volume.bento, or oci://registry/repository:tag (or @sha256:digest): a bento "
            "pushed to an OCI registry by `kubento push` or `kubento deploy`, fetched with the model's "
            "imagePullSecrets. A new URI (or sha256) is a new revision; replacing the object behind the same URI is "
            "not noticed (an oci:// tag is resolved to its digest once, when the bento's environment is prepared: "
            "status.environment.archive; its pods fetch that digest)."
        ),
    )
    sha256: Optional[str] = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="Expected SHA-256 of the archive (hex); pods refuse an archive that does not match.",
    )
    secret_ref: Optional[SecretReference] = Field(
        default=None,
        description=(
            "Secret whose keys become the fetcher's environment. s3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN, AWS_ENDPOINT_URL (S3-compatible "
            "stores) and AWS_REGION; http(s): HTTP_AUTHORIZATION (an Authorization header value). "
            "Only the init container that fetches sees them. Not for oci:// (imagePullSecrets)."
        ),
    )
    ca_bundle: Optional["CABundle"] = Field(
        default=None,
        description="oci://: the CA (PEM, in a ConfigMap) that signs the registry's certificate, trusted besides the "
        "public CAs.",
    )
    plain_http: Optional[bool] = Field(
        default=None, alias="plainHTTP",
        description="oci://: the registry speaks plain HTTP, not TLS (a registry for tests; never for credentials).",
    )

    @model_validator(mode="after")
    def _oci_only(self) -> "ArchiveSource":
        oci = self.uri.startswith("oci://")
        if self.ca_bundle is not None and not oci:
            raise ValueError("caBundle applies to oci:// archives only")
        if self.plain_http and not oci:
            raise ValueError("plainHTTP applies to oci:// archives only")
        if self.secret_ref is not None and oci:
            raise ValueError("an oci:// archive is fetched with the ModelDeployment's imagePullSecrets, not secretRef")
        return self


class ConfigMapProjectSource(Model):
    """A BentoML project (service.py, bentofile.yaml, ...) stored as ConfigMap
    keys, one file per key (a flat directory)."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="ConfigMap name.")


class PVCProjectSource(Model):
    """A BentoML project in a PersistentVolumeClaim."""

    claim_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="PersistentVolumeClaim name."
    )
    path: str = Field(
        default="/",
        max_length=1024,
        # no whitespace, and no ".." segment (the build never leaves the volume); no look-ahead in
        # the API server's regular expressions: a segment is "." or starts with a non-dot, ".x" or "..x"
        pattern=r"^/*(([^/.\s][^/\s]*|\.[^/.\s][^/\s]*|\.\.[^/\s]+|\.)/+)*([^/.\s][^/\s]*|\.[^/.\s][^/\s]*|\.\.[^/\s]+|\.)?$",
        description=(
            "Directory of the project inside the volume ('..' is not allowed). kubento cannot see the files: "
            "change path (e.g. a versioned directory) to build again."
        ),
    )


class GitProjectSource(Model):
    """A BentoML project in a git repository."""

    url: str = Field(
        pattern=r"^(https?|git)://[^\s/@]+(/[^\s]*)?$",
        max_length=2048,
        description=(
            "Repository URL: https://, http:// or git:// (ssh is not supported). Credentials go in "
            "secretRef, never in the URL (it is shown in status and events)."
        ),
    )
    ref: str = Field(
        default="HEAD",
        max_length=256,
        description=(
            "Branch, tag or commit to build. A new ref is a new build; pin a commit or tag, "
            "since kubento does not poll branches."
        ),
    )
    path: str = Field(default=".", max_length=1024, description="Directory of the project inside the repository.")
    secret_ref: Optional[SecretReference] = Field(
        default=None, description="Secret with https credentials under the keys 'username' and 'password'."
    )


class ProjectSource(Model):
    """Where the BentoML project is. Set exactly one of configMap, pvc or git."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "[has(self.configMap), has(self.pvc), has(self.git)].filter(x, x).size() == 1",
                "exactly one of configMap, pvc or git must be set",
            )
        )
    )

    config_map: Optional[ConfigMapProjectSource] = Field(default=None, description="Project files from a ConfigMap.")
    pvc: Optional[PVCProjectSource] = Field(default=None, description="Project directory in a PVC.")
    git: Optional[GitProjectSource] = Field(default=None, description="Project in a git repository.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ProjectSource":
        if sum(x is not None for x in (self.config_map, self.pvc, self.git)) != 1:
            raise ValueError("exactly one of configMap, pvc or git must be set")
        return self

    def describe(self) -> str:
        if self.config_map:
            return f"configMap {self.config_map.name}"
        if self.pvc:
            return f"pvc {self.pvc.claim_name}:{self.pvc.path}"
        assert self.git is not None
        return f"git {self.git.url}@{self.git.ref}:{self.git.path}"


class BuildOutput(Model):
    """Where build Jobs store the ``.bento`` archives they make (one object
    per source version, named <namespace>-<name>-<source hash>.bento)."""

    uri: str = Field(
        pattern=r"^(s3|pvc)://[^\s]+$",
        max_length=1024,
        description=(
            "s3://bucket/prefix or pvc://claim-name/directory. A claim is mounted read-write by the build "
            "and read-only by every model pod: use ReadWriteMany storage unless all run on one node."
        ),
    )
    secret_ref: Optional[SecretReference] = Field(
        default=None,
        description=(
            "Secret with the store's credentials (s3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "optional AWS_ENDPOINT_URL and AWS_REGION), for the build Job and for the pods that fetch."
        ),
    )


class BuildSource(Model):
    """A BentoML project (service.py + bentofile.yaml) that kubento builds in the
    cluster with an unprivileged Job (``bentoml build``, then ``bentoml export``
    to output) and then serves like an archive. A new build runs only when the
    source changes."""

    source: ProjectSource = Field(description="The project: exactly one of configMap, pvc or git.")
    output: BuildOutput = Field(description="Where the built archive is stored.")
    timeout_seconds: int = Field(
        default=1800, ge=60, le=86400, description="A build running longer than this fails."
    )
    resources: Optional["Resources"] = Field(
        default=None,
        description=(
            "CPU and memory requests and limits of the build pod (needed where a ResourceQuota "
            "requires them; by default it sets none)."
        ),
    )


class BentoSource(Model):
    """The BentoML service to serve. Set exactly one of image, archive or build."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "[has(self.image), has(self.archive), has(self.build)].filter(x, x).size() == 1",
                "exactly one of image, archive or build must be set",
            )
        )
    )

    image: Optional[str] = Field(
        default=None,
        min_length=1,
        max_length=1024,
        pattern=r"^\S+$",
        description="A container image made by `bentoml containerize` (e.g. registry/iris:1.0).",
    )
    archive: Optional[ArchiveSource] = Field(
        default=None, description="A .bento archive (bentoml export), imported into runtimeImage at pod start."
    )
    build: Optional[BuildSource] = Field(
        default=None, description="A BentoML project that kubento builds into a .bento archive in the cluster."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "BentoSource":
        if sum(x is not None for x in (self.image, self.archive, self.build)) != 1:
            raise ValueError("exactly one of image, archive or build must be set")
        return self

    @property
    def kind(self) -> str:
        return "image" if self.image else "archive" if self.archive else "build"


# ------------------------------------------------------- python environment


class CABundle(Model):
    """A CA bundle (PEM) in a ConfigMap of the ModelDeployment's namespace."""

    config_map: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the ConfigMap."
    )
    key: str = Field(
        default="ca.crt", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the ConfigMap that holds the PEM bundle.",
    )


class PackageIndex(Model):
    """The Python package index the bento's packages are installed from
    (pip's --index-url, --extra-index-url, --cert, --only-binary). Part of
    the environment's key: changing it prepares a new environment."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel("!has(self.secretRef) || has(self.url)", "secretRef needs url (credentials go to the index's host only)",
                ".secretRef"),
        )
    )

    url: Optional[str] = Field(
        default=None,
        pattern=r"^https?://[^\s@]+$",
        max_length=2048,
        description=(
            "Index URL (PEP 503 simple API), e.g. https://pypi.internal/simple. Unset: pip's default (pypi.org). "
            "No credentials in the URL: use secretRef."
        ),
    )
    extra_urls: list[Annotated[str, Field(pattern=r"^https?://[^\s@]+$", max_length=2048)]] = Field(
        default_factory=list, max_length=8, description="More indexes to look in (pip's --extra-index-url)."
    )
    ca_bundle: Optional[CABundle] = Field(
        default=None, description="CA bundle to trust for the index (a private CA); only the preparation pod mounts it."
    )
    secret_ref: Optional[SecretReference] = Field(
        default=None,
        description=(
            "Secret with basic-auth credentials under the keys 'username' and 'password', sent to the host of url "
            "(and of extraUrls on that host) only. Only the preparation pod sees them; never the model pods."
        ),
    )
    only_binary: bool = Field(
        default=False,
        description=(
            "Install wheels only, never build from a source distribution (pip --only-binary :all:): the runtime "
            "image has no compiler, and building runs the package's own setup code."
        ),
    )

    @model_validator(mode="after")
    def _auth_needs_url(self) -> "PackageIndex":
        if self.secret_ref is not None and not self.url:
            raise ValueError("secretRef needs url (credentials go to the index's host only)")
        return self


class PythonEnvironment(Model):
    """How the bento's own Python packages are prepared. A bento whose
    requirements (bentofile python.packages / requirements_txt, locked by
    bentoml build when lock_packages is on) are not all in the runtime image
    gets an environment: installed once, with the runtime image's Python, by
    an unprivileged Job (the build Job for bento.build), packed and stored
    beside the bento (s3 or pvc), shared by every model with the same
    dependency set, unpacked by each model pod next to the bento."""

    index: Optional[PackageIndex] = Field(
        default=None, description="Package index settings (default: the operator's, chart value packageIndex)."
    )
    timeout_seconds: int = Field(
        default=1800, ge=60, le=86400, description="An environment Job running longer than this fails."
    )
    resources: Optional["Resources"] = Field(
        default=None, description="CPU and memory requests and limits of the environment Job's pod."
    )


# ---------------------------------------------------------------- resources


RESOURCE_RULES = resource_rules()


class Resources(Model):
    """Compute resources of each model server container. Keys are resource
    names: cpu, memory, ephemeral-storage, hugepages-<size>, or extended
    resources such as nvidia.com/gpu (whole numbers; requests, if set, must
    equal limits: they are not overcommitted)."""

    model_config = ConfigDict(json_schema_extra=_rules(*(r.entry() for r in RESOURCE_RULES)))

    requests: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="Minimum resources reserved, e.g. {cpu: 500m, memory: 1Gi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="Maximum resources, e.g. {memory: 2Gi, nvidia.com/gpu: 1}."
    )

    @model_validator(mode="after")
    def _kubernetes_rules(self) -> "Resources":
        wire = self.wire()
        for rule in RESOURCE_RULES:
            if not rule.ok(wire):
                raise ValueError(rule.message)
        return self


# -------------------------------------------------------------- autoscaling

Metric = Literal["cpu", "memory", "concurrency", "rps"]

DEFAULT_TARGETS: dict[str, int] = {"cpu": 80, "memory": 80, "concurrency": 10, "rps": 50}


KEDA_OWN_METRICS = (
    "KEDA has no scaler for BentoML's per-pod concurrency/rps: give kedaTriggers, or use provider kubento"
)


class ScalingRules(Model):
    """How fast replicas may change in one direction (as an HPA's behavior).
    Both limits apply per ``periodSeconds``; the larger change allowed wins."""

    stabilization_window_seconds: Optional[int] = Field(
        default=None,
        ge=0,
        le=3600,
        description=(
            "Act on the most conservative recommendation of this many past seconds (scale-down default 300 "
            "for cpu/memory as in Kubernetes, 30 for concurrency/rps; scale-up default 0)."
        ),
    )
    percent: Optional[int] = Field(default=None, ge=1, le=10000, description="Change by at most this percent of the current replicas.")
    pods: Optional[int] = Field(default=None, ge=1, le=1000, description="Change by at most this many replicas.")
    period_seconds: int = Field(default=15, ge=1, le=1800, description="The period both limits apply to.")


class Behavior(Model):
    """Rate limits and stabilisation windows, for both the HPA (cpu/memory)
    and kubento's own autoscaler (concurrency/rps)."""

    scale_up: Optional[ScalingRules] = Field(default=None, description="Limits on adding replicas.")
    scale_down: Optional[ScalingRules] = Field(default=None, description="Limits on removing replicas.")


class Autoscaling(Model):
    """Horizontal autoscaling. cpu and memory use a HorizontalPodAutoscaler
    (target: average utilization in percent of requests); concurrency and rps
    use kubento's own autoscaler on BentoML's metrics (target: in-flight
    requests, or requests per second, per replica)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                ".minReplicas",
            ),
            cel(
                "!has(self.provider) || self.provider != 'keda' || !(self.metric in ['concurrency', 'rps']) || "
                "(has(self.kedaTriggers) && size(self.kedaTriggers) > 0)",
                KEDA_OWN_METRICS,
                ".provider",
            ),
            cel(
                "!has(self.kedaTriggers) || size(self.kedaTriggers) == 0 || self.provider == 'keda'",
                "kedaTriggers need provider keda",
                ".kedaTriggers",
            ),
            cel(
                "!has(self.window) || duration(self.window) >= duration('6s')",
                "window must be at least 6s (the autoscaler samples every 2s)",
                ".window",
            ),
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    metric: Metric = Field(default="cpu", description="What to scale on: cpu, memory, concurrency or rps.")
    target: Optional[int] = Field(
        default=None,
        ge=1,
        le=100000,
        description=(
            "Target value per replica. Defaults: cpu 80 (%), memory 80 (%), "
            "concurrency 10 (in-flight requests), rps 50 (requests/s)."
        ),
    )

    behavior: Optional[Behavior] = Field(default=None, description="Rate limits and stabilisation windows.")
    window: Duration = Field(
        default="60s",
        description=(
            "concurrency/rps: the metric is averaged over this window (a tenth of it in panic mode, entered when "
            "load reaches panicThreshold percent of what the ready replicas are sized for; no scale-down while "
            "panicking)."
        ),
    )
    panic_threshold: int = Field(
        default=200, ge=110, le=1000, description="concurrency/rps: percent of capacity that starts panic mode."
    )
    provider: Literal["kubento", "keda"] = Field(
        default="kubento",
        description=(
            "kubento: an HPA (cpu/memory) or kubento's own autoscaler (concurrency/rps). keda: a KEDA "
            "ScaledObject on the ModelDeployment instead (KEDA must be installed), with kedaTriggers or a "
            "cpu/memory trigger from metric and target."
        ),
    )
    keda_triggers: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=20,
        description="provider keda: the ScaledObject's triggers (any KEDA scaler), instead of metric and target.",
        json_schema_extra={"items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                     "description": "A KEDA trigger: type, metadata, authenticationRef, ..."}},
    )
    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be less than or equal to maxReplicas")
        if self.provider == "keda" and self.metric in ("concurrency", "rps") and not self.keda_triggers:
            raise ValueError(KEDA_OWN_METRICS)
        if self.keda_triggers and self.provider != "keda":
            raise ValueError("kedaTriggers need provider keda")
        if duration_seconds(self.window) < 6:
            raise ValueError("window must be at least 6s (the autoscaler samples every 2s)")
        return self

    @property
    def effective_target(self) -> int:
        return self.target if self.target is not None else DEFAULT_TARGETS[self.metric]


# ------------------------------------------------------------------ rollout


class RolloutStep(Model):
    """One canary step: send ``weight`` percent to the new revision, then hold
    for ``pause`` while analysis runs. In gateway mode a step may instead
    mirror requests to it (a shadow step: weight 0, mirror > 0)."""

    model_config = ConfigDict(json_schema_extra=_rules(
        cel("self.weight > 0 || has(self.mirror)", "weight 0 is a shadow step: it needs mirror (e.g. 100)", ".weight"),
        cel("!has(self.mirror) || self.weight == 0",
            "mirror is for a shadow step (weight 0): a step with weight sends requests to the new revision instead",
            ".mirror"),
    ))

    weight: int = Field(
        ge=0,
        le=100,
        description=(
            "Percent on the new revision (0-100; 0 only for a shadow step). Replicas mode: percent of the pods, "
            "and so of new connections through the Service, never exceeded where the replica count allows; the "
            "stable revision keeps at least one pod. Gateway mode (traffic.gateway): percent of requests, exact "
            "per request, set on the route once the new revision runs ceil(weight% x replicas) ready pods (at "
            "least one); the stable revision keeps its replicas."
        ),
    )
    mirror: Optional[int] = Field(
        default=None, ge=1, le=100,
        description=(
            "Gateway mode, shadow step (weight 0): percent of requests the route also sends to the new revision "
            "(a RequestMirror filter; its answers are discarded), which runs ceil(mirror% x replicas) pods (at "
            "least one). Analysis judges it under that load before it takes any weight. A Gateway that refuses or "
            "breaks the filter fails the step (reason MirrorNotSupported), found by a probe before the filter "
            "touches the route's traffic."
        ),
    )
    pause: Optional[Duration] = Field(default=None, description="How long to hold this step, e.g. 30s, 5m.")

    @model_validator(mode="after")
    def _shadow(self) -> "RolloutStep":
        if self.weight == 0 and self.mirror is None:
            raise ValueError("weight 0 is a shadow step: it needs mirror (e.g. 100)")
        if self.mirror is not None and self.weight != 0:
            raise ValueError("mirror is for a shadow step (weight 0): a step with weight sends requests to the new "
                             "revision instead")
        return self


class Analysis(Model):
    """Health checks on the new revision, from its BentoML metrics. A failed
    check rolls back when autoRollback is true."""

    max_error_rate: float = Field(
        default=0.05, ge=0, le=1, description="Largest share of 5xx responses of the new revision (0-1)."
    )
    max_latency_p95: Optional[Duration] = Field(
        default=None, description="Largest 95th percentile latency of the new revision, e.g. 500ms."
    )
    min_requests: int = Field(
        default=20,
        ge=0,
        description="Requests the new revision must answer in a step before a verdict; fewer is never a pass.",
    )
    interval: Duration = Field(
        default="30s",
        description="How often the new revision's /metrics are read; a verdict covers the whole step so far.",
    )
    output_shift: Optional["OutputShift"] = Field(
        default=None,
        description="Also compare the new revision's answers with the stable revision's over the same window "
        "(monitoring.statistics.output): a distribution further than maxDistance fails the rollout (OutputShift).",
    )


CANARY_NEEDS_STEPS = ("strategy Canary needs at least one step, e.g. steps: [{weight: 20, pause: 5m}] "
                      "(a rollout without steps is a RollingUpdate)")


class Rollout(Model):
    """How a new revision replaces the running one."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "!has(self.steps) || size(self.steps) == 0 || self.strategy == 'Canary'",
                "steps are only allowed with strategy Canary",
                ".steps",
            ),
            cel(
                "self.strategy != 'Canary' || (has(self.steps) && size(self.steps) > 0)",
                CANARY_NEEDS_STEPS,
                ".steps",
            ),
            cel(
                "!has(self.steps) || (self.steps.map(s, s.weight).isSorted() && "
                "self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight)))",
                "step weights must be strictly ascending",
                ".steps",
            ),
            cel(
                "!has(self.analysis) || self.strategy != 'RollingUpdate'",
                "analysis needs strategy Canary or BlueGreen (a rolling update has no step to judge)",
                ".analysis",
            ),
        )
    )

    strategy: Literal["RollingUpdate", "Canary", "BlueGreen"] = Field(
        default="RollingUpdate",
        description=(
            "RollingUpdate: the new revision's pods replace the old ones one at a time, old pods go only as new "
            "ones become Ready. Canary: the new revision gets steps[].weight percent of the pods (the "
            "Service selects both), each step held for its pause and, with analysis, until its metrics pass; "
            "the stable revision keeps ceil((100 - weight)% of replicas) pods (at least one) and the new one "
            "the most pods within the weight (at least one), so a step runs at most one pod above replicas and "
            "is coarser than asked with few replicas (1 replica: 1 new + 1 stable pod, 50%; status.canaryWeight "
            "shows the effective weight). "
            "BlueGreen: the new revision starts in full behind the <name>-preview Service; the main Service "
            "switches once it is Ready. In gateway mode (traffic.gateway) weights are shares of requests on the "
            "model's HTTPRoute: see traffic.gateway and steps[].weight; BlueGreen's preview is the new revision's "
            "own Service and the route's header rule, and the switch moves the route."
        ),
    )
    steps: list[RolloutStep] = Field(
        default_factory=list, max_length=20,
        description="Canary steps (at least one for strategy Canary), weights strictly ascending.",
    )
    analysis: Optional[Analysis] = Field(default=None, description="Automatic checks of the new revision.")
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description=(
            "Seconds a new revision (or a canary step) may take to become ready, and an analysis to reach a "
            "verdict, before the rollout fails."
        ),
    )
    auto_rollback: bool = Field(
        default=True,
        description=(
            "Return to the stable revision when the new one crash-loops, cannot pull its image, misses "
            "progressDeadlineSeconds or fails analysis. Off: the rollout holds where it is."
        ),
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description=(
            "BlueGreen: seconds the old revision keeps its pods after the Service switches to the new one, so "
            "clients still routed to old pods (kube-proxy on each node applies the switch on its own time, and "
            "open keep-alive connections stay where they are) are answered; the rollout completes after it. "
            "Other strategies remove old pods only as they stop receiving traffic and ignore it."
        ),
    )
    revision_history_limit: int = Field(
        default=10,
        ge=0,
        le=100,
        description="Old revisions kept in status.history; their Deployments stay, scaled to 0, for kubento rollback.",
    )

    @model_validator(mode="after")
    def _steps(self) -> "Rollout":
        if self.steps and self.strategy != "Canary":
            raise ValueError("steps are only allowed with strategy Canary")
        if self.strategy == "Canary" and not self.steps:
            raise ValueError(CANARY_NEEDS_STEPS)
        weights = [s.weight for s in self.steps]
        if any(a >= b for a, b in zip(weights, weights[1:])):
            raise ValueError("step weights must be strictly ascending")
        if self.analysis is not None and self.strategy == "RollingUpdate":
            raise ValueError("analysis needs strategy Canary or BlueGreen (a rolling update has no step to judge)")
        return self


# -------------------------------------------------------- prediction checks

JSON_PATH_PATTERN = r"^\$"


def _check_json_path(value: str) -> str:
    from kubento.predictions.expect import compile_path

    compile_path(value)  # raises ValueError naming the syntax error
    return value


JsonPathText = Annotated[str, Field(max_length=512, pattern=JSON_PATH_PATTERN), AfterValidator(_check_json_path)]
JSON_PATH_DESCRIPTION = (
    "An RFC 9535 JSONPath selecting the part of the answer to judge, e.g. $[0] or $.scores[0]; default: the whole "
    "answer. Several matches are judged as their list (equals) or one by one (number, oneOf); no match fails."
)


# A class label: a string or an integer (a class index).
Label = Annotated[
    Union[StrictInt, str],
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]


class ConfigMapKeyRef(Model):
    """One key of a ConfigMap in the ModelDeployment's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="ConfigMap name.")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="The key.")


class InputSource(Model):
    """Request bodies kept in a ConfigMap (for large or many inputs)."""

    config_map_key_ref: ConfigMapKeyRef = Field(description="The ConfigMap key holding the input.")


class Expectation(Model):
    """What the answer (or the part jsonPath selects) must be. Set exactly one
    of equals, number or oneOf."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            # CEL cannot see equals (any JSON has no schema type): the models check the rest of the rule.
            cel("!has(self.number) || !has(self.oneOf)", "set exactly one of equals, number or oneOf"),
            cel(
                "!has(self.tolerance) || !has(self.oneOf)",
                "tolerance applies to equals and number, not oneOf",
                ".tolerance",
            ),
        )
    )

    json_path: Optional[JsonPathText] = Field(default=None, description=JSON_PATH_DESCRIPTION)
    equals: Optional[Any] = Field(
        default=None,
        description=(
            "Any JSON value (not null) the answer must equal: objects key by key, lists item by item, numbers "
            "within tolerance (1 and 1.0 are equal; true is not 1)."
        ),
    )
    number: Optional[float] = Field(
        default=None, description="A number the answer must be within tolerance of (a JSON number, not a string)."
    )
    tolerance: Optional[float] = Field(
        default=None, ge=0, description="Largest absolute difference allowed for numbers (default 0: exact)."
    )
    one_of: Optional[list[Label]] = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Labels (strings or integers) of which the answer must be one, e.g. [versicolor, virginica].",
    )

    @model_validator(mode="after")
    def _one(self) -> "Expectation":
        if sum(x is not None for x in (self.equals, self.number, self.one_of)) != 1:
            raise ValueError("set exactly one of equals, number or oneOf")
        if self.tolerance is not None and self.one_of is not None:
            raise ValueError("tolerance applies to equals and number, not oneOf")
        return self


class PredictionCheck(Model):
    """A known input and the answer it must get. kubento sends it to each new
    pod, directly, once the pod's own probes pass and before the pod gets
    any Service traffic."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "self.method == 'GET' ? !has(self.body) && !has(self.bodyFrom) : "
                "[has(self.body), has(self.bodyFrom)].filter(x, x).size() == 1",
                "set exactly one of body or bodyFrom (none with method GET)",
            )
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN, description="Names the check in "
                      "conditions, events and `kubento check`.")
    path: str = Field(pattern=r"^/\S*$", max_length=1024, description="The endpoint, e.g. /classify.")
    method: Literal["POST", "GET"] = Field(default="POST", description="POST (a JSON body) or GET.")
    body: Optional[dict[str, Any]] = Field(
        default=None,
        description="The request body as inline JSON: an object, as a BentoML API takes (sent as application/json).",
    )
    body_from: Optional[InputSource] = Field(
        default=None,
        description=(
            "The request body from a ConfigMap key (JSON text). Read when a pod is checked: an edit applies to "
            "pods checked afterwards; name another key to make it a new revision."
        ),
    )
    expect: list[Expectation] = Field(
        min_length=1, max_length=16, description="What the answer must be; every expectation must hold."
    )
    timeout: RequestTimeout = Field(default="5s", description=(
        "How long to wait for the whole answer, e.g. 5s, 500ms (at most 60s). kubento reads at most 1 MiB of it "
        "and follows no redirect (a 3xx fails the check)."))

    @model_validator(mode="after")
    def _body(self) -> "PredictionCheck":
        given = sum(x is not None for x in (self.body, self.body_from))
        if (self.method == "GET" and given) or (self.method != "GET" and given != 1):
            raise ValueError("set exactly one of body or bodyFrom (none with method GET)")
        return self


class StableComparison(Model):
    """Compare a new revision with the stable one on the same inputs before
    the new revision takes any traffic: each input goes to one stable and one
    new pod; the share of inputs whose answers agree must reach minAgreement,
    else the rollout fails (PredictionMismatch)."""

    inputs: InputSource = Field(description="A ConfigMap key of JSON lines: one request body a line.")
    path: str = Field(pattern=r"^/\S*$", max_length=1024, description="The endpoint the inputs are POSTed to.")
    min_agreement: float = Field(ge=0, le=1, description="Smallest share of inputs whose answers agree (0-1).")
    json_path: Optional[JsonPathText] = Field(
        default=None, description="Compare only this part of the answers (an RFC 9535 JSONPath, e.g. $[0])."
    )
    tolerance: float = Field(default=0, ge=0, description="Numbers within this absolute difference agree.")
    max_inputs: int = Field(default=100, ge=1, le=1000, description="Send at most this many lines (the first).")
    timeout: RequestTimeout = Field(default="5s", description=(
        "How long to wait for each whole answer (at most 60s). kubento reads at most 1 MiB of each and follows no "
        "redirect (a 3xx is a disagreement)."))


class PredictionChecks(Model):
    """Prediction checks: no pod of the model takes traffic before it has
    answered known inputs correctly. Each pod gets a readiness gate
    (serving.kubento.io/prediction-checks) that kubento sets once the checks
    pass; a pod that fails stays out of the Service, and a new revision that
    fails is rolled back (PredictionCheckFailed). Part of the revision: a
    change rolls out as a new revision."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "(has(self.checks) && size(self.checks) > 0) || has(self.compareWithStable)",
                "give at least one check or compareWithStable",
            )
        )
    )

    checks: list[PredictionCheck] = Field(
        default_factory=list, max_length=32, description="Known inputs and their answers.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    compare_with_stable: Optional[StableComparison] = Field(
        default=None, description="Compare a new revision's answers with the stable revision's before it serves."
    )

    @model_validator(mode="after")
    def _something(self) -> "PredictionChecks":
        if not self.checks and self.compare_with_stable is None:
            raise ValueError("give at least one check or compareWithStable")
        names = [c.name for c in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("check names must be unique")
        return self

    def config_maps(self) -> set[str]:
        """ConfigMaps the checks read."""
        refs = [c.body_from for c in self.checks if c.body_from is not None]
        if self.compare_with_stable is not None:
            refs.append(self.compare_with_stable.inputs)
        return {r.config_map_key_ref.name for r in refs}


# ------------------------------------------------------------- data quality
# Sampled payload logs and per-revision input/output statistics, measured in
# the model pod (kubento.runtime.monitor), judged by the operator
# (kubento.quality) and by the canary analysis (Analysis.outputShift).

FIELD_PATH_DESCRIPTION = (
    "a field path: $ then .name, ['name'], [0], [-1] or [*] (a subset of JSONPath), e.g. $.features[*], $[2], "
    "$.user.email"
)
STAT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$"
MAX_BUCKETS = 49  # upper bounds (+Inf is the 50th bucket)
MAX_CATEGORIES = 50
CategoryName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^\s](.*[^\s])?$")]


def _check_field_path(value: str) -> str:
    from kubento.runtime.fields import compile_path

    compile_path(value)
    return value


FieldPath = Annotated[str, Field(max_length=256, pattern=PATH_PATTERN), AfterValidator(_check_field_path)]


def _ascending(bounds: Optional[list[float]]) -> None:
    if bounds is not None and any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError("buckets must be strictly ascending")


BUCKETS_RULE = cel("!has(self.buckets) || self.buckets.all(b, self.buckets.exists_one(c, c == b)) && "
                   "self.buckets.isSorted()", "buckets must be strictly ascending", ".buckets")
KIND_RULES = (
    cel("!has(self.buckets) || self.type == 'numeric'", "buckets apply to type numeric", ".buckets"),
    cel("!has(self.categories) || self.type == 'categorical'", "categories apply to type categorical",
        ".categories"),
)


class _Distribution(Model):
    """How one field's values are counted (shared by inputs and the output)."""

    type: Literal["numeric", "categorical"] = Field(
        default="numeric", description="numeric: counted in buckets by value; categorical: counted by name.")
    buckets: Optional[list[float]] = Field(
        default=None, min_length=1, max_length=MAX_BUCKETS,
        description="numeric: the buckets' upper bounds, strictly ascending (a last bucket takes the rest). "
        "Default: the reference profile's (its deciles).",
    )
    categories: Optional[list[CategoryName]] = Field(
        default=None, min_length=1, max_length=MAX_CATEGORIES,
        description="categorical: the names counted one by one (anything else counts as __other__). Default: "
        "the reference profile's (its most frequent). A name never comes from requests unless listed here or "
        "in the profile.",
    )

    @model_validator(mode="after")
    def _kind(self) -> "_Distribution":
        _ascending(self.buckets)
        if self.buckets is not None and self.type != "numeric":
            raise ValueError("buckets apply to type numeric")
        if self.categories is not None and self.type != "categorical":
            raise ValueError("categories apply to type categorical")
        return self


class FieldStatistics(_Distribution):
    """One input feature: where it is in a row, and how it is counted."""

    model_config = ConfigDict(json_schema_extra=_rules(BUCKETS_RULE, *KIND_RULES))

    name: str = Field(pattern=STAT_NAME_PATTERN, description="The feature's name (a metric label value).")
    path: FieldPath = Field(description=f"Where the feature is in a row: {FIELD_PATH_DESCRIPTION} (e.g. $[0] in "
                            "a list row, $.age in an object row). Nothing there, or null, counts as missing.")


class OutputStatistics(_Distribution):
    """The model's answer: where it is in an output row, and how it is counted."""

    model_config = ConfigDict(json_schema_extra=_rules(BUCKETS_RULE, *KIND_RULES))

    type: Literal["numeric", "categorical"] = Field(
        default="categorical", description="categorical (a class, the default) or numeric (a score, a value).")
    path: FieldPath = Field(default="$", description=f"Where the answer is in an output row: {FIELD_PATH_DESCRIPTION}.")


class ProfileSource(Model):
    """Where a reference profile is (the JSON `kubento profile` writes)."""

    config_map_key_ref: ConfigMapKeyRef = Field(description="The ConfigMap key holding the profile.")


class Statistics(Model):
    """Per-revision statistics of one endpoint's inputs and outputs. Every
    request to ``endpoint`` is counted in the model pod (kubento's runtime:
    bento.archive and bento.build), in fixed buckets; the operator reads the
    counts from the pods' /metrics every ``interval`` and exports, per
    revision, the drift of each feature from the reference profile, the
    share of rows missing each feature and the shift of the outputs
    (Jensen-Shannon distance, 0 to 1) over the last ``window``."""

    endpoint: str = Field(pattern=r"^/\S*$", max_length=256, description="The API whose requests are counted, "
                          "e.g. /classify.")
    input_rows: Optional[FieldPath] = Field(
        default=None, description=f"Where the rows are in a request body ({FIELD_PATH_DESCRIPTION}), e.g. "
        "$.features[*] for a body {\"features\": [[...], [...]]}. Default: the body is one row.")
    inputs: list[FieldStatistics] = Field(
        default_factory=list, max_length=32, description="The features counted (at most 32).",
        json_schema_extra=LIST_MAP_BY_NAME)
    output_rows: Optional[FieldPath] = Field(
        default=None, description=f"Where the rows are in a response body ({FIELD_PATH_DESCRIPTION}), e.g. $[*] "
        "for [\"setosa\", \"virginica\"]. Default: the body is one row. Only 2xx answers are counted.")
    output: Optional[OutputStatistics] = Field(default=None, description="The answer counted, if any.")
    reference: Optional[ProfileSource] = Field(
        default=None, description="The reference profile (`kubento profile NAME --from FILE` writes it): the "
        "expected distribution of each field, and the buckets and categories it does not set. Read when the "
        "revision is made: a new profile whose buckets differ is a new revision.")
    interval: Duration = Field(default="30s", description="How often the operator reads the pods' counts.")
    window: Duration = Field(default="10m", description="The scores cover this much recent traffic.")
    min_rows: int = Field(default=300, ge=1, le=1_000_000, description=(
        "Rows a revision must have sent (or answered) in the window before it gets a score: fewer scores "
        "nothing (see the Data quality docs for the bias of small samples)."))

    @model_validator(mode="after")
    def _unique(self) -> "Statistics":
        names = [f.name for f in self.inputs]
        if len(names) != len(set(names)):
            raise ValueError("input names must be unique")
        return self


class PayloadHTTPSink(Model):
    """CloudEvents (HTTP binary mode) to a URL, as KServe's payload logger
    sends them: one org.kubeflow.serving.inference.request and one
    ...inference.response event per sampled request, sharing its id."""

    url: str = Field(pattern=r"^https?://[^\s@]+$", max_length=2048, description=(
        "The receiver, e.g. http://payload-receiver.monitoring/ (no credentials: the model's own code shares "
        "the process that sends; keep the receiver inside the cluster)."))
    timeout: RequestTimeout = Field(default="2s", description="Deadline of each POST (at most 60s); redirects "
                                    "are not followed.")


class PayloadFiles(Model):
    """JSON lines files on a PersistentVolumeClaim, one file per model
    server process at a time, rotated by size and age."""

    claim_name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN,
                            description="The PersistentVolumeClaim (ReadWriteMany unless every pod runs on one node).")
    path: str = Field(default="payloads", max_length=256, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$",
                      description="Directory in the volume (relative, no segment starting with a dot; created if "
                      "missing).")
    max_bytes: int = Field(default=64 << 20, ge=1 << 16, le=1 << 34, description="A file is closed past this size.")
    max_age: Duration = Field(default="1h", description="A file is closed after this long.")


class Payloads(Model):
    """Sampled payload logs: a share of the requests to the model's API,
    with their answers, written by the model pod to its sinks."""

    model_config = ConfigDict(json_schema_extra=_rules(
        cel("self.stdout || has(self.http) || has(self.files)", "give at least one sink: stdout, http or files"),
    ))

    sample_rate: float = Field(ge=0, le=1, description="Share of the requests recorded (0-1), decided at random "
                               "per request; the others cost one random draw.")
    max_bytes: int = Field(default=16384, ge=256, le=1 << 20, description=(
        "Largest request or response body recorded; a larger one is recorded as its size only (truncated)."))
    drop: list[FieldPath] = Field(default_factory=list, max_length=32, description=(
        "Fields removed from recorded bodies (requests and responses), e.g. $.customer.email."))
    hash: list[FieldPath] = Field(default_factory=list, max_length=32, description=(
        "Fields replaced by a SHA-256 hash of their value (the same value, the same hash: joinable, not "
        "anonymous; a guessable value can be confirmed by hashing guesses: drop those)."))
    endpoints: list[Annotated[str, Field(pattern=r"^/\S*$", max_length=256)]] = Field(
        default_factory=list, max_length=32, description="Endpoints recorded (default: every API endpoint; probes, "
        "/metrics and docs never).")
    stdout: bool = Field(default=True, description="JSON lines on the model container's stdout (what cluster "
                         "log pipelines collect).")
    http: Optional[PayloadHTTPSink] = Field(default=None, description="CloudEvents to an HTTP receiver.")
    files: Optional[PayloadFiles] = Field(default=None, description="JSON lines files on a PersistentVolumeClaim.")

    @model_validator(mode="after")
    def _a_sink(self) -> "Payloads":
        if not (self.stdout or self.http or self.files):
            raise ValueError("give at least one sink: stdout, http or files")
        return self


class Monitoring(Model):
    """What goes in and what comes out: sampled payload logs and
    per-revision input/output statistics, measured in the model pod by
    kubento's runtime (bento.archive and bento.build; an image made by
    bentoml containerize runs its own server, which kubento cannot see
    into). Part of the revision: a change rolls out as a new revision."""

    model_config = ConfigDict(json_schema_extra=_rules(
        cel("has(self.payloads) || has(self.statistics)", "give payloads, statistics or both"),
    ))

    payloads: Optional[Payloads] = Field(default=None, description="Sampled payload logs.")
    statistics: Optional[Statistics] = Field(default=None, description="Input and output statistics, drift scores.")

    @model_validator(mode="after")
    def _something(self) -> "Monitoring":
        if self.payloads is None and self.statistics is None:
            raise ValueError("give payloads, statistics or both")
        return self


MONITORING_NEEDS_RUNTIME = ("monitoring applies to bento.archive and bento.build only (an image made by bentoml "
                            "containerize runs its own server, without kubento's runtime)")
OUTPUT_SHIFT_NEEDS_OUTPUT = "rollout.analysis.outputShift needs monitoring.statistics.output (what is compared)"
OUTPUT_SHIFT_NEEDS_CANARY = ("rollout.analysis.outputShift needs strategy Canary (both revisions answer the same "
                             "traffic mix)")


class OutputShift(Model):
    """A canary analysis criterion: the new revision's output distribution
    against the stable revision's, over the same window (both serve the same
    traffic mix). Jensen-Shannon distance (base 2): 0 for the same
    distribution, 1 for disjoint ones."""

    max_distance: float = Field(gt=0, le=1, description="Largest distance that passes, e.g. 0.2.")
    min_outputs: int = Field(default=100, ge=1, le=1_000_000, description=(
        "Answers (output rows) each revision must have given in the window before a verdict; fewer is never a "
        "pass."))


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
        f"first {PRESTOP_SECONDS} let the endpoint removal reach every node. Longer than your slowest request.",
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
        if self.shm_size is not None and quantity_value(self.shm_size) <= 0:
            raise ValueError("shmSize must be greater than 0")
        wire = self.wire()
        for rule in POD_RULES:
            if not rule.ok(wire):
                raise ValueError(f"{rule.field_path.lstrip('.')}: {rule.message}")
        return self


# ------------------------------------------------------------------- status

Phase = Literal["Pending", "Building", "PreparingEnvironment", "Progressing", "Ready", "Degraded", "RolledBack", "Failed"]
ConditionType = Literal["Ready", "Progressing", "Available", "Degraded", "RolledBack", "BuildSucceeded",
                        "EnvironmentReady", "RouteAccepted"]


class Condition(Model):
    """An observation of one aspect of the ModelDeployment."""

    type: str = Field(
        description="Ready, Progressing, Available, Degraded, RolledBack, BuildSucceeded, EnvironmentReady or "
        "RouteAccepted (gateway mode: every Gateway accepted the model's HTTPRoute and resolved its backends).")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: Optional[str] = Field(default=None, description="When status last changed (RFC 3339).")
    observed_generation: Optional[int] = Field(default=None, description="Generation this condition was set for.")


class HistoryEntry(Model):
    """A revision that ran (``kubento history``)."""

    number: int = Field(default=0, description="Increasing number of the rollout (kubento rollback --to-revision N).")
    revision: str = Field(description="Revision hash.")
    bento: str = Field(description="The bento it served (image, archive URI or build source).")
    environment: Optional[str] = Field(
        default=None, description="Its Python environment: hash, package count and size (none: the runtime image's)."
    )
    time: str = Field(description="When the outcome was recorded (RFC 3339).")
    outcome: str = Field(description="Progressing, Serving, Superseded, Abandoned, RolledBack or Aborted.")
    reason: Optional[str] = Field(default=None, description="Why it was rolled back or aborted, in one word.")
    message: str = Field(default="", description="Why it was rolled back or aborted.")
    agreement: Optional[float] = Field(
        default=None, description="Share of predictionChecks.compareWithStable inputs on which it agreed with stable."
    )


class Agreement(Model):
    """predictionChecks.compareWithStable: how the new revision's answers
    compared with the stable revision's."""

    rate: float = Field(description="Share of the compared inputs whose answers agreed (0-1).")
    agreed: int = Field(description="Inputs whose answers agreed.")
    compared: int = Field(description="Inputs both revisions answered (the stable pod's failures are left out).")
    min_agreement: float = Field(description="The spec's minAgreement.")
    passed: bool = Field(description="rate >= minAgreement.")
    message: str = Field(default="", description="The result in words, with the first disagreement.")


class RolloutStatus(Model):
    """A rollout under way: what the operator must remember across passes
    and restarts."""

    revision: str = Field(description="The new revision being rolled out.")
    number: Optional[int] = Field(default=None, description="Its number in status.history.")
    ready: Optional[int] = Field(default=None, description="Its ready replicas at the last progress.")
    strategy: str = Field(description="RollingUpdate, Canary or BlueGreen.")
    step: int = Field(default=0, description="Index of the current canary step.")
    since: str = Field(description="When the current wait began: the rollout's start or the last step (RFC 3339).")
    step_reached: Optional[str] = Field(default=None, description="When the current step's replicas were first ready.")
    service: Literal["stable", "both", "candidate"] = Field(
        default="stable", description="Which revisions the Service selects: stable, both or candidate."
    )
    requested_weight: Optional[int] = Field(
        default=None,
        description=(
            "Canary: the current step's weight. status.canaryWeight is the effective one (the share of ready "
            "pods), coarser with few replicas: with 1 replica every step below 100 runs 1 new beside 1 stable pod."
        ),
    )
    promoted: Optional[bool] = Field(default=None, description="kubento promote was asked: steps and analysis are skipped.")
    rollback: Optional[str] = Field(default=None, description="Reason of a rollback under way.")
    rollback_message: Optional[str] = Field(default=None, description="Why the rollback started.")
    analysis: Optional[str] = Field(default=None, description="The last analysis verdict, e.g. error rate 2.0% <= 5.0%.")
    agreement: Optional[Agreement] = Field(
        default=None, description="predictionChecks.compareWithStable: the new revision compared with stable."
    )


class AutoscalingStatus(Model):
    """kubento's own autoscaler (concurrency/rps): what it saw and decided."""

    metric: str = Field(description="concurrency or rps.")
    target: float = Field(description="Target value per replica.")
    window_value: Optional[float] = Field(default=None, description="The metric over the whole window (all ready pods).")
    panic_value: Optional[float] = Field(default=None, description="The metric over the panic window.")
    panic: bool = Field(default=False, description="Panic mode: load far above capacity; no scale-down.")
    ready_replicas: int = Field(default=0, description="Ready pods the metric came from.")
    desired_replicas: int = Field(description="Replicas the model should have (within minReplicas and maxReplicas).")
    reason: str = Field(default="", description="Why: ScaleUp, ScaleDown, Steady, Panic, NoData, RateLimited, Stabilizing.")
    message: str = Field(default="", description="The decision in words.")
    last_scale_time: Optional[str] = Field(default=None, description="When desiredReplicas last changed (RFC 3339).")


class BuildStatus(Model):
    """The build of the current source. Once it succeeded, its archive is
    served from here: losing the Job or its pod changes nothing."""

    source: str = Field(description="What is built (configMap, pvc or git, and where).")
    source_hash: str = Field(description="Hash of the source's content and build settings.")
    job: str = Field(description="Name of the build Job.")
    archive: Optional[str] = Field(default=None, description="URI of the built archive, once the build succeeded.")
    tag: Optional[str] = Field(default=None, description="BentoML tag of the built bento (name:version).")
    sha256: Optional[str] = Field(default=None, description="SHA-256 of the built archive; pods check it when they fetch.")


class EnvironmentStatus(Model):
    """The Python environment of the current bento (see spec.python)."""

    source: str = Field(description="Hash of what the environment was prepared from (bento, runtime image, index).")
    job: Optional[str] = Field(default=None, description="The Job that prepared it (the build Job for bento.build).")
    hash: Optional[str] = Field(
        default=None, description="The environment's key: hash of requirements, Python, platform, runtime packages, index."
    )
    uri: Optional[str] = Field(default=None, description="Where the packed environment is stored.")
    sha256: Optional[str] = Field(default=None, description="SHA-256 of the packed environment; pods check it.")
    archive: Optional[str] = Field(
        default=None, description="oci:// archives: the URI with the digest its tag had when this was prepared; the "
        "model's pods fetch that digest."
    )
    size: Optional[int] = Field(default=None, description="Packed size in bytes.")
    unpacked: Optional[int] = Field(default=None, description="Unpacked size in bytes.")
    packages: Optional[int] = Field(
        default=None, description="Packages installed beside the runtime image's (0: the runtime image has them all)."
    )
    python: Optional[str] = Field(default=None, description="Python version (major.minor) it was prepared with.")
    reused: Optional[bool] = Field(default=None, description="Found in the store, prepared earlier for the same dependency set.")


class ModelDeploymentStatus(Model):
    """Observed state, written by the operator."""

    phase: Optional[Phase] = Field(
        default=None,
        description="Pending, Building, PreparingEnvironment, Progressing, Ready, Degraded, RolledBack or Failed.",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions.")
    observed_generation: Optional[int] = Field(default=None, description="The spec generation last acted on.")
    current_revision: Optional[str] = Field(default=None, description="Revision the operator is rolling out or running.")
    stable_revision: Optional[str] = Field(default=None, description="Last revision that became Ready.")
    canary_weight: Optional[int] = Field(
        default=None,
        description="Effective weight. Replicas mode: percent of the model's ready pods on the new revision (see "
        "rollout.requestedWeight). Gateway mode: percent of requests the model's HTTPRoute sends to it.",
    )
    rollout: Optional[RolloutStatus] = Field(default=None, description="The rollout under way, if any.")
    failed_revision: Optional[str] = Field(
        default=None,
        description="Revision last rolled back or aborted; the same spec is not retried until it changes.",
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, description="Revisions that ran, newest last (bounded by rollout.revisionHistoryLimit)."
    )
    build: Optional[BuildStatus] = Field(default=None, description="The build of the current source (bento.build).")
    environment: Optional[EnvironmentStatus] = Field(
        default=None, description="The Python environment of the current bento (archive and build)."
    )
    autoscaling: Optional[AutoscalingStatus] = Field(default=None, description="kubento's own autoscaler (concurrency/rps).")
    url: Optional[str] = Field(
        default=None,
        description="The model's URL: in gateway mode, once a Gateway accepted the route, the external one (its "
        "listener's scheme and port, the route's first host name or the Gateway's address, the path prefix); "
        "otherwise the in-cluster URL of the model's Service.")
    traffic: Optional[TrafficStatus] = Field(default=None, description="How requests reach the model.")
    replicas: Optional[int] = Field(default=None, description="Model server pods (all revisions).")
    ready_replicas: Optional[int] = Field(default=None, description="Pods passing their readiness probe.")
    selector: Optional[str] = Field(default=None, description="Label selector of the pods (scale subresource).")


ArchiveSource.model_rebuild()
Analysis.model_rebuild()
BuildSource.model_rebuild()
PythonEnvironment.model_rebuild()
