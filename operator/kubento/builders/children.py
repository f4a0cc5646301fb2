"""The children of a model settled on one revision, as one list."""

from __future__ import annotations

from typing import Any

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import deployment, model_replicas, revision
from kubento.builders.hpa import horizontal_pod_autoscaler
from kubento.builders.meta import Owner
from kubento.builders.service import preview_service, service


def desired_children(spec: ModelDeploymentSpec, owner: Owner, bento: ServedBento) -> list[dict[str, Any]]:
    """Deployment, Service (and preview Service for BlueGreen, HPA for
    cpu/memory autoscaling) when ``bento``'s revision serves all traffic."""
    rev = revision(spec, bento)
    children = [deployment(spec, owner, bento, model_replicas(spec)), service(spec, owner, rev)]
    if spec.rollout.strategy == "BlueGreen":
        children.append(preview_service(spec, owner, rev))
    hpa = horizontal_pod_autoscaler(spec, owner)
    if hpa is not None:
        children.append(hpa)
    return children
