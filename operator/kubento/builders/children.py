"""Everything a ModelDeployment should own, as one list."""

from __future__ import annotations

from typing import Any

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import deployment
from kubento.builders.hpa import horizontal_pod_autoscaler
from kubento.builders.meta import Owner
from kubento.builders.service import service

# Kinds the controller manages, so it can delete those no longer desired.
MANAGED_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler"))


def desired_children(spec: ModelDeploymentSpec, owner: Owner, bento: ServedBento) -> list[dict[str, Any]]:
    """Deployment, Service and (for cpu/memory autoscaling) HPA serving ``bento``."""
    children = [deployment(spec, owner, bento), service(spec, owner)]
    hpa = horizontal_pod_autoscaler(spec, owner)
    if hpa is not None:
        children.append(hpa)
    return children
