"""HorizontalPodAutoscaler for the cpu and memory metrics."""

from __future__ import annotations

from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import Behavior, ModelDeploymentSpec
from kubento.builders.meta import Owner, object_meta, with_applied_hash
from kubento.builders.validate import validated

HPA_METRICS = ("cpu", "memory")


def horizontal_pod_autoscaler(spec: ModelDeploymentSpec, owner: Owner) -> Optional[dict[str, Any]]:
    """The HPA, or None when the spec does not call for one."""
    scaling = spec.autoscaling
    if scaling is None or scaling.metric not in HPA_METRICS or scaling.provider != "kubento":
        return None
    manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(owner, owner.name),
        "spec": {
            # The model as a whole (its scale subresource), not one revision's
            # Deployment: rollouts split the count between revisions.
            "scaleTargetRef": {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "name": owner.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": scaling.metric,
                        "target": {"type": "Utilization", "averageUtilization": scaling.effective_target},
                    },
                }
            ],
        },
    }
    rules = behavior(scaling.behavior)
    if rules:
        manifest["spec"]["behavior"] = rules
    return validated(with_applied_hash(manifest))


def behavior(spec_behavior: Optional[Behavior]) -> dict[str, Any]:
    """spec.autoscaling.behavior as the HPA's: each set limit a policy, the
    larger change allowed wins (selectPolicy Max), as in the HPA's defaults."""
    out: dict[str, Any] = {}
    for key, rules in (("scaleUp", spec_behavior and spec_behavior.scale_up),
                       ("scaleDown", spec_behavior and spec_behavior.scale_down)):
        if rules is None:
            continue
        entry: dict[str, Any] = {}
        if rules.stabilization_window_seconds is not None:
            entry["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
        policies = [{"type": kind, "value": value, "periodSeconds": rules.period_seconds}
                    for kind, value in (("Percent", rules.percent), ("Pods", rules.pods)) if value is not None]
        if policies:
            entry["policies"] = policies
            entry["selectPolicy"] = "Max"
        if entry:
            out[key] = entry
    return out
