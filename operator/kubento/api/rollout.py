"""spec.rollout: how a new revision replaces the serving one (RollingUpdate, Canary,
BlueGreen), its steps and analysis. Part of the ModelDeployment API."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import ConfigDict, Field, model_validator

from kubento.api.common import Duration, Model, cel, rules as _rules
from kubento.api.monitoring import OutputShift


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
