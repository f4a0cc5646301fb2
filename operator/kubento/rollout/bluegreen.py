"""BlueGreen: the new revision starts in full behind the preview Service;
the model's Service switches once all its replicas are ready (and, with
analysis, its requests through the preview pass); the old revision keeps its
pods for ``scaleDownDelaySeconds`` after the switch, so a node whose
kube-proxy has not caught up yet still reaches a pod that answers.

In gateway mode the switch is the route's: every request goes to the new
revision once it is ready (its own Service and the route's header rule are
the preview; no <name>-preview Service), and the old revision keeps its pods
until the route sends it nothing and the delay has passed."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

from kubento.rollout.strategy import Observed, Plan, Strategy, gateway_mode

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import ModelDeploymentSpec, Rollout, RolloutStatus
    from kubento.builders.meta import Owner


def step(o: Observed) -> Plan:
    p = _step(o)
    return replace(p, route=p.weight) if o.gateway else p


def _step(o: Observed) -> Plan:
    r = o.replicas
    if o.service != "candidate":
        if o.candidate.ready < r:
            return Plan(max(r, o.stable.desired), r, "stable", "Progressing", "PreviewStarting",
                        f"{o.candidate.ready} of {r} new replicas ready (not serving yet)", preview=True)
        reached = o.step_reached if o.step_reached is not None else o.now
        if o.analysis and o.verdict != "pass":
            return Plan(r, r, "stable", "Paused", "AnalysisInconclusive",
                        o.verdict_message or "waiting for an analysis verdict on the preview",
                        preview=True, analyze=True, step_reached=reached)
        return Plan(r, r, "candidate", "Progressing", "Switching", "the Service now selects the new revision",
                    preview=True, weight=100, since=o.now)
    left = o.since + o.scale_down_delay - o.now
    if o.gateway and o.stable.desired > 0 and o.carries != (100, 0):
        return Plan(o.stable.desired, r, "candidate", "Progressing", "Switching",
                    "the route is moving every request to the new revision", weight=100)
    if o.stable.desired > 0 and left > 0:
        # Every node's kube-proxy learns of the switch on its own time; until
        # then some connections still reach old pods, which must answer them.
        return Plan(o.stable.desired, r, "candidate", "Progressing", "ScalingDownOld",
                    f"the Service selects the new revision; the old one keeps its pods {left:.0f}s more "
                    "while every node catches up", weight=100)
    if o.stable.desired > 0:
        return Plan(0, r, "candidate", "Progressing", "ScalingDownOld",
                    "the Service selects the new revision; removing the old one", weight=100)
    return Plan(0, r, "candidate", "Promoted", "Promoted", f"the new revision serves all {r} replicas", weight=100)


def wake_after(rollout: "Rollout", state: "RolloutStatus", now: float) -> Optional[float]:
    """The old revision's time after the switch runs out."""
    from kubento.rollout.revisions import epoch

    since = epoch(state.since) or now
    left = since + rollout.scale_down_delay_seconds - now
    return left + 0.05 if state.service == "candidate" and left > 0 else None


def children(spec: "ModelDeploymentSpec", owner: "Owner", revision: Optional[str]) -> list[dict[str, Any]]:
    """The preview Service, selecting the revision being rolled out (else the
    serving one); none in gateway mode (the revision's own Service is the preview)."""
    from kubento.builders.service import preview_service

    return [preview_service(spec, owner, revision)] if revision and not gateway_mode(spec) else []


def child_names(owner: "Owner") -> list[tuple[str, str, str]]:
    from kubento.builders.meta import preview_name

    return [("v1", "Service", preview_name(owner))]


STRATEGY = Strategy("BlueGreen", step, wake_after=wake_after, children=children, child_names=child_names)
