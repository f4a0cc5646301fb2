"""Check built manifests against the Kubernetes client's own (pydantic) models.

A check of kubento's builders, made where tests run them
(``KUBENTO_CHECK_MANIFESTS=1``: the root conftest.py sets it, so every test
that builds a manifest checks it). The operator itself does not: the typed
client's models are 1,000+ modules (~50 MB of its memory) and a validation
per manifest per pass, and the API server checks what is applied anyway.
"""

from __future__ import annotations

import os
from typing import Any


def validated(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return ``manifest`` unchanged; when checking, raise pydantic.ValidationError
    if the Kubernetes model for its kind rejects it (unknown field, wrong type)."""
    if os.environ.get("KUBENTO_CHECK_MANIFESTS") == "1":
        try:
            from kubernetes import client
        except ImportError:  # `kubento run` under a test (it inherits the variable) has no typed client
            return manifest

        models = {
            ("apps/v1", "Deployment"): client.V1Deployment,
            ("v1", "Service"): client.V1Service,
            ("autoscaling/v2", "HorizontalPodAutoscaler"): client.V2HorizontalPodAutoscaler,
            ("batch/v1", "Job"): client.V1Job,
        }
        models[(manifest["apiVersion"], manifest["kind"])].model_validate(manifest)
    return manifest
