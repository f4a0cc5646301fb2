"""What one pass knows, as data: the plan's only input.

kubento.controller.observe fills an :class:`Observation` (from the caches and
the few reads a pass needs); kubento.controller.plan.plan turns it into
actions without any I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import ValidationError

from kubento.api.traffic import MirrorCheck
from kubento.api.v1alpha1 import Agreement, AutoscalingStatus, ModelDeploymentSpec, ModelDeploymentStatus
from kubento.builders.bento import DEFAULT_RUNTIME_IMAGE
from kubento.builders.defaults import Gpus
from kubento.controller.status import Problem, parse_status
from kubento.controller.world import World
from kubento.predictions.gate import PodResult
from kubento.quality.profile import Profile
from kubento.rollout.analysis import Verdict


@dataclass
class Inputs:
    """What the pass knows beyond the cached objects."""

    now: float  # wall clock, seconds (one clock per pass)
    default_runtime_image: str = DEFAULT_RUNTIME_IMAGE
    missing_secrets: frozenset[str] = frozenset()  # Secrets named in the spec that do not exist
    config_map: Optional[dict[str, Any]] = None  # the build source ConfigMap's content (None: missing)
    snapshots: frozenset[str] = frozenset()  # source snapshot ConfigMaps that exist
    verdict: Optional[Verdict] = None  # analysis of the current step, when one is due
    scaling: Optional[AutoscalingStatus] = None  # kubento's autoscaler's status.autoscaling
    keda_served: bool = False
    default_index: Optional[dict[str, Any]] = None  # the operator's package index (KUBENTO_PACKAGE_INDEX)
    gpus: Gpus = Gpus()  # the operator's GPU settings (KUBENTO_GPUS)
    shared_jobs: list[dict[str, Any]] = field(default_factory=list)  # another model's environment Job this one uses
    shared_pods: list[dict[str, Any]] = field(default_factory=list)  # and its pods
    generations: dict[tuple[str, str], int] = field(default_factory=dict)  # memory: children as last seen
    rejected: dict[str, tuple[str, float]] = field(default_factory=dict)  # memory: applied-hash -> refusal
    apply_problems: list[Problem] = field(default_factory=list)  # the apply layer's answers, on a second plan
    check_results: dict[str, PodResult] = field(default_factory=dict)  # prediction checks run now, by pod uid
    agreement: Optional[Agreement] = None  # the rollout's candidate compared with stable, now
    profile: Optional[Profile] = None  # spec.monitoring.statistics.reference, parsed
    profile_problem: Optional[tuple[str, str]] = None  # (reason, message): why it could not be read
    # Revisions kept as ControllerRevisions whose Deployment is missing but must serve (stable, a
    # candidate): revision -> the ControllerRevision, read to make the Deployment again.
    stored_revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Gateway mode (spec.traffic.gateway):
    routes_served: bool = True  # the cluster serves Gateway API's HTTPRoute
    retry_served: bool = False  # and its HTTPRoute has rules[].retry (the experimental channel)
    # the route's Gateways, by (namespace, name), as looked up: stripped (controller.route), None when missing
    gateways: dict[tuple[str, str], Optional[dict[str, Any]]] = field(default_factory=dict)
    mirror_check: Optional[MirrorCheck] = None  # a probe of the Gateways' mirroring, done now


@dataclass
class Observation:
    """What one pass knows: the model and its children, its spec parsed
    once, and the inputs beyond the cache."""

    world: World
    spec: Optional[ModelDeploymentSpec]  # None: the stored spec does not validate (spec_error says why)
    inputs: Inputs
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)  # as stored, parsed once
    spec_error: str = ""
    wake_after: Optional[float] = None  # the soonest an input wants another pass (a Secret's recheck, a sample)
    checked: Optional[Any] = None  # the checks job whose results this pass uses (forgotten once written)

    @classmethod
    def of(cls, world: World, inputs: Inputs) -> "Observation":
        """An observation of ``world`` with ``inputs`` as given (the plan's unit tests)."""
        assert world.model is not None
        status = parse_status(world.model.get("status"))
        try:
            return cls(world, ModelDeploymentSpec.model_validate(world.model.get("spec") or {}), inputs, status)
        except ValidationError as exc:
            return cls(world, None, inputs, status, spec_error=" ".join(str(exc).split()))


