"""spec.autoscaling: HPA, KEDA or kubento's own autoscaler on concurrency or requests per
second. Part of the ModelDeployment API (kubento.api.v1alpha1)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, model_validator

from kubento.api.common import Duration, Model, cel, duration_seconds, rules as _rules


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
