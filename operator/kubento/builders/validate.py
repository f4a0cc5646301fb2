"""Check built manifests against the kubernetes client's own (pydantic) models."""

from __future__ import annotations

from typing import Any

from kubernetes import client

MODELS = {
    ("apps/v1", "Deployment"): client.V1Deployment,
    ("v1", "Service"): client.V1Service,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): client.V2HorizontalPodAutoscaler,
    ("batch/v1", "Job"): client.V1Job,
}


def validated(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return ``manifest`` unchanged, or raise pydantic.ValidationError if the
    Kubernetes model for its kind rejects it (unknown field, wrong type)."""
    model = MODELS[(manifest["apiVersion"], manifest["kind"])]
    model.model_validate(manifest)
    return manifest
