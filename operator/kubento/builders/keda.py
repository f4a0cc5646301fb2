"""A KEDA ScaledObject (autoscaling.provider: keda). Like kubento's HPA, it
scales the ModelDeployment itself through its scale subresource; KEDA makes
its own HPA from it."""

from __future__ import annotations

from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.hpa import behavior
from kubento.builders.meta import Owner, object_meta, with_applied_hash

KEDA_API_VERSION = "keda.sh/v1alpha1"
KIND = "ScaledObject"


def scaled_object(spec: ModelDeploymentSpec, owner: Owner) -> Optional[dict[str, Any]]:
    """The ScaledObject, or None when the spec does not ask for KEDA."""
    scaling = spec.autoscaling
    if scaling is None or scaling.provider != "keda":
        return None
    triggers = scaling.keda_triggers or [{
        "type": scaling.metric,  # cpu or memory (the API refuses concurrency/rps without triggers)
        "metricType": "Utilization",
        "metadata": {"value": str(scaling.effective_target)},
    }]
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "name": owner.name},
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "triggers": triggers,
    }
    hpa_behavior = behavior(scaling.behavior)
    if hpa_behavior:
        body["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": hpa_behavior}}
    return with_applied_hash({"apiVersion": KEDA_API_VERSION, "kind": KIND,
                              "metadata": object_meta(owner, owner.name), "spec": body})
