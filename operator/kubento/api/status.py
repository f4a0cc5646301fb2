"""ModelDeployment status: what the operator reports (conditions, rollout, build,
environment, autoscaling, traffic). The CRD's status schema is generated from it and
every pass parses and writes it through it (kubento.controller.status)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from kubento.api.common import Model
from kubento.api.traffic import TrafficStatus


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


class BentoServiceResources(Model):
    """A service's ``resources`` as its bento declares them (BentoML's @bentoml.service)."""

    cpu: Optional[str] = Field(default=None, max_length=64, description="CPU, as a Kubernetes quantity.")
    memory: Optional[str] = Field(default=None, max_length=64, description="Memory, as a Kubernetes quantity.")
    gpu: Optional[int] = Field(default=None, ge=0, description="GPUs.")
    gpu_type: Optional[str] = Field(default=None, max_length=63, description="The GPU type it asks for.")


class BentoService(Model):
    """One BentoML service of the bento, with the settings its bento.yaml keeps."""

    name: str = Field(max_length=63, description="The service's name (its class).")
    depends_on: Optional[list[str]] = Field(default=None, max_length=16,
                                  description="Services of the same bento it calls (bentoml.depends).")
    resources: Optional[BentoServiceResources] = Field(default=None, description="Its declared resources.")
    workers: Optional[str] = Field(
        default=None, max_length=16, pattern=r"^([0-9]+|cpu_count)$",
        description="Its worker processes: a number, or cpu_count (one per CPU BentoML counts).")
    timeout: Optional[float] = Field(default=None, description="traffic.timeout: seconds a request may take.")
    concurrency: Optional[int] = Field(default=None, description="traffic.concurrency: requests in progress it "
                                       "is sized for.")
    max_concurrency: Optional[int] = Field(default=None, description="traffic.max_concurrency: requests in "
                                           "progress per worker beyond which it answers 429.")


class BentoServices(Model):
    """The bento's BentoML services (1.2+), read from its bento.yaml when its environment was prepared. Today
    every service runs in each of the model's pods."""

    entry: str = Field(max_length=63, description="The entry service: the one the model's Service reaches.")
    services: list[BentoService] = Field(default_factory=list, max_length=16, description="The entry first.")
    more: Optional[int] = Field(default=None, description="Services not listed (status keeps a few).")


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
    services: Optional[BentoServices] = Field(
        default=None, description="The bento's services, read from its bento.yaml by the same Job: their declared "
        "resources are the pods' defaults (see spec.resources).")


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
